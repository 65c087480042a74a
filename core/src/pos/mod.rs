//! POS domain types (in progress: issue "POS side").
