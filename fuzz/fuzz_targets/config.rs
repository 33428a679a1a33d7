//! Configuration files as `prdiff config apply` reads them: `ConfigFile::parse` (TOML
//! plus every value's own check and the cross-field checks), then what apply and the
//! stores do with a file that parses:
//! - the secret names apply derives from configuration and data source ids,
//! - the stored form (secrets by name) written as JSON and read back, as the stores do,
//!   must read and equal what was written,
//! - the file written back as TOML must parse to the same file,
//! - the sync schedule evaluated as the scheduled sync does, the files_to_ignore
//!   matcher asked about a few paths.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prdiff_shared::app::apply::{config_secret_name, data_source_secret_name};
use prdiff_shared::config::{CiConfig, ConfigFile, DataSource, DataSourceId};
use prdiff_shared::app::sync::is_due;

const PATHS: [&str; 5] = ["README.md", "docs/a.md", "/models/a.sql", "", "a/b/../c"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let known = [DataSourceId::parse("wh").unwrap()];
    let Ok(file) = ConfigFile::parse(text, &known) else {
        return;
    };

    // Written back as TOML, the file reads the same.
    if let Ok(again) = toml::to_string(&file) {
        match ConfigFile::parse(&again, &known) {
            Ok(back) => assert_eq!(back, file, "TOML round trip of\n{again}"),
            Err(e) => panic!("the file written back does not parse: {e}\n{again}"),
        }
    }

    for ds in file.data_sources.clone() {
        let name = data_source_secret_name(&ds.id);
        let stored: DataSource = ds.map_secrets(|_, _| Ok::<_, ()>(name)).unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        let back: DataSource = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stored);
    }
    for c in file.ci_configs.clone() {
        let id = c.name.clone();
        let stored: CiConfig = c
            .map_secrets(|role, _| Ok::<_, ()>(config_secret_name(&id, role)))
            .unwrap();
        assert!(stored.status_context().ends_with(id.as_str()));
        assert!(stored.comment_marker().contains(id.as_str()));
        assert_eq!(stored.secret_names().len(), 2);
        let json = serde_json::to_string(&stored).unwrap();
        let back: CiConfig = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("stored form does not read back: {e}\n{json}"));
        assert_eq!(back, stored);

        if let Some(schedule) = &stored.sync_schedule {
            for (last, now) in [
                (None, 0),
                (Some(0), 1_700_000_000),
                (Some(1_700_000_000), 1_700_086_400),
            ] {
                let _ = is_due(schedule, last, now);
            }
        }
        let ignore = &stored.files_to_ignore;
        for p in PATHS {
            let _ = ignore.is_ignored(p);
        }
        let _ = ignore.all_ignored(PATHS);
    }
});
