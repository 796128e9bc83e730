//! Hugging Face datasets read offline from their parquet files.
