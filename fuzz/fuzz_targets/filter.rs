//! Row filters (`prdiff_shared::sql::filter::parse_filter`): every dialect, any text.
//! A filter that is accepted renders (`SafeFilter::sql`) to text that is accepted again
//! by the same dialect, so what reaches the warehouse is always a checked filter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prdiff_shared::sql::all_dialects;
use prdiff_shared::sql::filter::parse_filter;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in all_dialects() {
        let Ok(safe) = parse_filter(dialect, raw) else {
            continue;
        };
        let rendered = safe.sql().to_string();
        assert!(
            parse_filter(dialect, &rendered).is_ok(),
            "{}: {raw:?} was accepted and rendered as {rendered:?}, which is refused",
            dialect.name()
        );
    }
});
