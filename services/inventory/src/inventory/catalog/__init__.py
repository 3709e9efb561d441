"""The merchant's catalog: products, barcodes and per-store prices."""
