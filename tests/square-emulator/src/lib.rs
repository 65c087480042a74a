//! Square POS emulator (in progress: issue "POS side").
