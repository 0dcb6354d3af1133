//! The example policies compiled into the binary, so that `picket serve`
//! runs with them from anywhere (the files under `policies/` are the source).

/// `(path relative to the policy directory, content)` for every file.
pub const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    ("global.json", include_str!("../../policies/global.json")),
    ("acme.json", include_str!("../../policies/acme.json")),
    (
        "lists/malware.txt",
        include_str!("../../policies/lists/malware.txt"),
    ),
    (
        "lists/ads.txt",
        include_str!("../../policies/lists/ads.txt"),
    ),
    (
        "lists/trackers.hosts",
        include_str!("../../policies/lists/trackers.hosts"),
    ),
];
