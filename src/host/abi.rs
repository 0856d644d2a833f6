//! The few host calls whose SDK wrappers panic on an unexpected status (a panic kills the
//! worker's VM). These return the status instead, so the caller can treat a failure as data.
#![allow(unsafe_code)]

use proxy_wasm::types::{BufferType, MapType, Status, StreamType};

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
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
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

/// The host's header-map wire format: count, then (name length, value length) pairs, then
/// the NUL-terminated names and values.
fn serialize_map<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        bytes.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        bytes.extend_from_slice(k.as_ref().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(v.as_ref().as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Replaces a whole header map in one host call.
pub fn set_headers<K: AsRef<str>, V: AsRef<str>>(map: MapType, pairs: &[(K, V)]) -> Result<(), Status> {
    let bytes = serialize_map(pairs);
    result(unsafe { proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) })
}

pub fn set_header(map: MapType, name: &str, value: &str) -> Result<(), Status> {
    result(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    result(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Replaces bytes `start..start+size` of a body buffer with `data`.
pub fn set_buffer(buffer: BufferType, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
    result(unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) })
}

/// Lets a paused request continue (from the root context, after `set_effective_context`).
pub fn resume_request() -> Result<(), Status> {
    result(unsafe { proxy_continue_stream(StreamType::HttpRequest) })
}

/// Takes the bytes the host wrote for us (allocated through the SDK's
/// `proxy_on_memory_allocate`, one boxed slice of exactly `size` bytes).
fn take_host_bytes(status: Status, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    match status {
        Status::Ok if !data.is_null() => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
        Status::Ok => Some(Vec::new()),
        _ => None,
    }
}

/// One header's raw value (no UTF-8 conversion, so no panic on odd bytes); `None` when absent
/// or when the host refuses.
pub fn header_bytes(map: MapType, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let status = unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    take_host_bytes(status, data, size)
}

/// Up to `max` bytes of a buffer from `start`; `None` when there is none.
pub fn buffer_bytes(buffer: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
    take_host_bytes(status, data, size).filter(|bytes| !bytes.is_empty())
}

pub fn set_tick_period(period: std::time::Duration) -> Result<(), Status> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    result(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Replies marked with this detail are the filter's own (Envoy reports it as
/// `response.code_details`), so the response callbacks leave them alone.
pub const LOCAL_REPLY_DETAILS: &str = "codex_filter";

pub fn send_response<K: AsRef<str>, V: AsRef<str>>(
    status: u16,
    headers: &[(K, V)],
    body: &[u8],
) -> Result<(), Status> {
    let map = serialize_map(headers);
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
