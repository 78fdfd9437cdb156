//! Realistic list files for tests and benchmarks. (Skeleton: the import
//! helper replaces this file.)
