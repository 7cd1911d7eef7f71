//! Image discovery (spec/discovery.md): from `name[:version][,label=value]` to the URLs of an
//! image, its signature and its keys. Skeleton: the fetch work fills it in.
