use memchr::memmem::Finder;

/// A substring searcher that owns its needle.
///
/// Picket: memchr's owned `Finder` replaces the original's raw-pointer
/// self-reference, which made filters neither `Send` nor `Sync` and needed
/// `unsafe` to free the needle.
pub struct HeapSearcher(Finder<'static>);

impl<T: Into<Box<[u8]>>> From<T> for HeapSearcher {
    fn from(bytes: T) -> HeapSearcher {
        let bytes: Box<[u8]> = bytes.into();
        HeapSearcher(Finder::new(&bytes[..]).into_owned())
    }
}

impl HeapSearcher {
    /// The position of the first occurrence of the needle (0 for an empty needle).
    pub fn search_in(&self, haystack: &[u8]) -> Option<usize> {
        self.0.find(haystack)
    }
}
