//! Orders and sales documents as REST returns them (spec §6). Placeholder; filled in next.

/// REST-only order data.
#[derive(Debug, Clone, Default)]
pub struct SalesStore {}
