//! Adobe Commerce emulator (in progress: issue "Magento MSI ... emulator").
