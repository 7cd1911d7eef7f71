//! Pod networking: loopback, the default bridge network (rtnetlink), IPAM, nftables
//! masquerade and port maps, DNS and hosts files. Skeleton: the networking work fills it in.
