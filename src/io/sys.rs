//! Thin wrappers over the C library that every part of the kernel side shares.

/// The calling thread's errno after a failed call.
#[inline]
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
