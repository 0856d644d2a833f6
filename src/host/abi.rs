//! The few host calls whose SDK wrappers panic on an unexpected status (a panic kills the
//! worker's VM). These return the status instead, so the caller can treat a failure as data.
#![allow(unsafe_code)]

use proxy_wasm::types::{BufferType, MapType, Status, StreamType};

use crate::core::flow::step::LOCAL_REPLY_DETAILS;
use crate::core::port::SharedWriteError;
use crate::core::wire::header_map::serialize;

// Same signatures as the SDK's own declarations of these imports.
#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_set_header_map_pairs(map_type: MapType, map_data: *const u8, map_size: usize) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
    fn proxy_continue_stream(stream_type: StreamType) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

fn result(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

/// Replaces a whole header map in one host call.
pub fn set_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(map: MapType, pairs: &[(K, V)]) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::MapSet);
    let bytes = serialize(pairs);
    result(unsafe { proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) })
}

pub fn set_header(map: MapType, name: &str, value: &str) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::ValueSet);
    result(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::ValueRemove);
    result(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Replaces bytes `start..start+size` of a body buffer with `data`.
pub fn set_buffer(buffer: BufferType, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::BodySet);
    result(unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) })
}

/// Lets a paused request continue (from the root context, after `set_effective_context`).
pub fn resume_request() -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::Other);
    result(unsafe { proxy_continue_stream(StreamType::HttpRequest) })
}

pub fn set_tick_period(period: std::time::Duration) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::Other);
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    result(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// A local reply, marked with [`LOCAL_REPLY_DETAILS`] so the response callbacks know it.
pub fn send_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: u16,
    headers: &[(K, V)],
    body: &[u8],
) -> Result<(), Status> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::LocalReply);
    let map = serialize(headers);
    result(unsafe {
        proxy_send_local_response(
            u32::from(status),
            LOCAL_REPLY_DETAILS.as_ptr(),
            LOCAL_REPLY_DETAILS.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

// --- Reads. The SDK's readers decode header maps and values as UTF-8 with `unwrap` and panic
// on statuses they do not expect; a client can send any byte in a header. These hand every
// value over as bytes (the flow decides what bytes that are not text mean), and a failed read
// is an absent value. Statuses are read as plain integers, so an unknown one is not undefined
// behaviour either.

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    #[link_name = "proxy_get_header_map_pairs"]
    fn raw_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    #[link_name = "proxy_get_header_map_value"]
    fn raw_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_buffer_bytes"]
    fn raw_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_property"]
    fn raw_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_current_time_nanoseconds"]
    fn raw_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    #[link_name = "proxy_get_shared_data"]
    fn raw_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    #[link_name = "proxy_set_shared_data"]
    fn raw_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

const OK: u32 = 0;
const CAS_MISMATCH: u32 = 8;

/// Takes ownership of what the host wrote: it allocated it through the SDK's
/// `proxy_on_memory_allocate`, as a boxed slice of exactly `size` bytes.
fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != OK {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A whole header map in the host's serialized form (`core::wire::header_map`); empty when
/// the host has none to give.
pub fn header_map(map: MapType) -> Vec<u8> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::MapGet);
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let status = unsafe { raw_get_header_map_pairs(map as u32, &mut data, &mut size) };
    owned(status, data, size).unwrap_or_default()
}

pub fn header_value(map: MapType, name: &str) -> Option<Vec<u8>> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::ValueGet);
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let status =
        unsafe { raw_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size) };
    owned(status, data, size)
}

/// Bytes `start..start+size` of a body buffer (fewer if it is shorter).
pub fn buffer(buffer: BufferType, start: usize, size: usize) -> Vec<u8> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::BodyGet);
    let (mut data, mut size_out) = (std::ptr::null_mut(), 0);
    let status = unsafe { raw_get_buffer_bytes(buffer as u32, start, size, &mut data, &mut size_out) };
    owned(status, data, size_out).unwrap_or_default()
}

/// A property such as `["response", "code_details"]`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::Property);
    let path = path.join("\0");
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let status = unsafe { raw_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    owned(status, data, size).filter(|value| !value.is_empty())
}

/// Unix time in milliseconds from the host clock (0 if the host cannot tell).
pub fn now_ms() -> u64 {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::Clock);
    let mut nanos = 0u64;
    match unsafe { raw_get_current_time_nanoseconds(&mut nanos) } {
        OK => nanos / 1_000_000,
        _ => 0,
    }
}

/// A shared-data value and its compare-and-swap token; `None` when the key is absent.
pub fn shared_data(key: &str) -> Option<(Vec<u8>, u32)> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::SharedGet);
    #[cfg(feature = "phase-probe")]
    crate::core::probe::shared_key(key);
    let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0, 0);
    let status = unsafe { raw_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    // As the SDK reads it: no value is no key.
    if data.is_null() {
        return None;
    }
    owned(status, data, size).map(|value| (value, cas))
}

/// Writes a shared-data key (`cas` 0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), SharedWriteError> {
    #[cfg(feature = "phase-probe")]
    crate::core::probe::count(crate::core::probe::Call::SharedSet);
    match unsafe { raw_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) } {
        OK => Ok(()),
        CAS_MISMATCH => Err(SharedWriteError::CasMismatch),
        _ => Err(SharedWriteError::Failed),
    }
}
