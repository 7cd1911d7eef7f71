//! resource.Quantity (stub; being written).
