//! dbt artifacts: `Manifest::from_slice` (the streaming scanner plus the typed node,
//! macro and source readers) and `RunResults::from_slice`, then what is done with a
//! manifest that reads: each node's relation rendered in every SQL dialect, and the
//! planner run against a small fixed manifest and against itself.
//!
//! One input is tried as both kinds: a manifest is not a run_results, and the reader
//! must say so with an error.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prdiff_shared::manifest::{Manifest, RunResults};
use prdiff_shared::plan::{PlanInputs, PlanSettings, plan};
use prdiff_shared::sql::all_dialects;

/// A seed manifest (two models, a seed, a test, a macro, a source) as the other side.
fn base() -> &'static Manifest {
    static BASE: OnceLock<Manifest> = OnceLock::new();
    BASE.get_or_init(|| {
        Manifest::from_slice(
            include_bytes!("../corpus/manifest/plan-prod.manifest.json"),
            Path::new("base"),
        )
        .unwrap()
    })
}

fn settings(slim_ci: bool) -> PlanSettings {
    PlanSettings {
        slim_ci,
        downstream: slim_ci,
        ..PlanSettings::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let origin = Path::new("fuzz");
    let run_results = RunResults::from_slice(data, origin).ok();
    if let Some(r) = &run_results {
        for (id, result) in &r.results {
            assert_eq!(r.get(id).map(|x| &x.unique_id), Some(&result.unique_id));
        }
    }
    let Ok(manifest) = Manifest::from_slice(data, origin) else {
        return;
    };
    let dialects = all_dialects();
    for node in manifest.nodes.values() {
        let _ = node.is_diffable_kind();
        if let Some(relation) = node.relation() {
            for d in &dialects {
                let sql = d.relation(&relation);
                assert!(!sql.is_empty());
            }
        }
    }
    for (prod, pr, slim) in [
        (base(), &manifest, true),
        (&manifest, base(), false),
        (&manifest, &manifest, true),
    ] {
        let settings = settings(slim);
        let p = plan(&PlanInputs {
            prod,
            pr,
            pr_run_results: run_results.as_ref(),
            settings: &settings,
        });
        serde_json::to_string(&p).unwrap();
    }
});
