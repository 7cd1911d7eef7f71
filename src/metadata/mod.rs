//! The metadata service of spec/ace.md: pod and app metadata, identity sign/verify, pod
//! registration. Skeleton: the metadata work fills it in.
