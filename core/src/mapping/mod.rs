//! POS ↔ Commerce mapping (in progress: issue "POS side").
