//! Envoy's properties as `get_property` reads them: the plugin's own, then the stream's
//! (request, source, destination, response, filter state), encoded as Envoy encodes them.

use crate::abi::encode_pairs;
use crate::host::lock;
use crate::plugin::VmState;

/// Reads a property as Envoy encodes it: strings as bytes, integers as 8 bytes little-endian,
/// maps as header pairs. `None` is `NotFound`.
pub(crate) fn get_property(vm: &VmState, path: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).filter(|s| !s.is_empty()).collect();
    let text: Vec<String> = segments
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let parts: Vec<&str> = text.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["plugin_name"] => return Some(vm.plugin_name.clone().into_bytes()),
        ["plugin_root_id"] => return Some(vm.root_id.clone().into_bytes()),
        ["plugin_vm_id"] => return Some(vm.vm_id.clone().into_bytes()),
        _ => {}
    }
    let stream = vm.stream.as_ref()?;
    let s = lock(stream);
    let joined = segments.join(&0u8);
    if let Some(value) = s.properties.get(&joined) {
        return Some(value.clone());
    }
    let header = |name: &str| s.request_headers.get(name).map(<[u8]>::to_vec);
    let int = |v: i64| Some(v.to_le_bytes().to_vec());
    let (host, port) = split_address(&s.source);
    let (dhost, dport) = split_address(&s.destination);
    match parts.as_slice() {
        ["request", "path"] => header(":path"),
        ["request", "url_path"] => {
            let path = header(":path")?;
            let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
            Some(path[..end].to_vec())
        }
        ["request", "query"] => {
            let path = header(":path")?;
            let at = path.iter().position(|b| *b == b'?')?;
            Some(path[at + 1..].to_vec())
        }
        ["request", "method"] => header(":method"),
        ["request", "host"] => header(":authority"),
        ["request", "scheme"] => header(":scheme"),
        ["request", "id"] => header("x-request-id"),
        ["request", "protocol"] => Some(b"HTTP/1.1".to_vec()),
        ["request", "useragent"] => header("user-agent"),
        ["request", "referer"] => header("referer"),
        ["request", "headers"] => Some(encode_pairs(&s.request_headers.pairs)),
        ["request", "headers", name] => header(name),
        ["source", "address"] => Some(s.source.clone().into_bytes()),
        ["source", "port"] => int(port?),
        ["destination", "address"] => Some(s.destination.clone().into_bytes()),
        ["destination", "port"] => int(dport?),
        ["response", "code"] => int(i64::from(s.response_code?)),
        ["response", "headers"] => {
            s.response_code?;
            Some(encode_pairs(&s.response_headers.pairs))
        }
        ["response", "headers", name] => s.response_headers.get(name).map(<[u8]>::to_vec),
        ["filter_state", key] => s.filter_state.get(*key).cloned(),
        [single] => s.filter_state.get(&format!("wasm.{single}")).cloned(),
        _ => {
            let _ = (host, dhost);
            None
        }
    }
}

fn split_address(address: &str) -> (Option<&str>, Option<i64>) {
    match address.rsplit_once(':') {
        Some((host, port)) => (Some(host), port.parse().ok()),
        None => (Some(address), None),
    }
}
