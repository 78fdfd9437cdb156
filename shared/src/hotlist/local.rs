//! Locally entered hotlist entries as one automerge document. (Skeleton:
//! the local-entries helper replaces this file.)
