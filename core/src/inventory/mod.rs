//! Magento Multi-Source Inventory, as a pure model (in progress: issue "Magento MSI in
//! tillbridge-core").
