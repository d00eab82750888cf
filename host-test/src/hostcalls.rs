//! The `env` imports of proxy-wasm ABI 0.2.1, with Envoy's semantics (proxy-wasm-cpp-host's
//! `exports.cc` and Envoy's `context.cc`). Differences found by the probe conformance test
//! are fixed here or listed in host-test's README.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::abi::{decode_pairs, encode_pairs, BufferType, LogLevel, MapType, MetricType, Status};
use crate::headers::Headers;
use crate::host::{lock, GrpcOutcome, GrpcRequest, HttpCallReply, HttpCallRequest};
use crate::plugin::{
    PendingCall, PendingGrpc, VmState, CALLOUT_TOKEN_STEP, GRPC_CALL_TOKEN_TYPE,
    GRPC_STREAM_TOKEN_TYPE,
};
use crate::stream::LocalResponse;

/// Why a host call did not succeed: a status for the module, or a trap.
pub(crate) enum Fail {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Status(s)
    }
}

type Call<'a> = Caller<'a, VmState>;
type Out = Result<(), Fail>;

fn ret(r: Out) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(Status::Ok as i32),
        Err(Fail::Status(s)) => Ok(s as i32),
        Err(Fail::Trap(e)) => Err(e),
    }
}

// ---- guest memory ----

pub(crate) fn read(c: &mut Call, ptr: i32, len: i32) -> Result<Vec<u8>, Fail> {
    let memory = c.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    Ok(memory
        .data(&*c)
        .get(start..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .to_vec())
}

pub(crate) fn read_str(c: &mut Call, ptr: i32, len: i32) -> Result<String, Fail> {
    String::from_utf8(read(c, ptr, len)?).map_err(|_| Fail::Status(Status::BadArgument))
}

pub(crate) fn write(c: &mut Call, ptr: i32, bytes: &[u8]) -> Out {
    let memory = c.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    memory
        .data_mut(&mut *c)
        .get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(c: &mut Call, ptr: i32, value: u32) -> Out {
    write(c, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates (`proxy_on_memory_allocate`) and writes
/// the pointer and size, as Envoy's `copyToPointerSize` does: nothing is allocated for empty
/// data and the pointer is then 0.
pub(crate) fn return_bytes(c: &mut Call, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Out {
    let mut address = 0i32;
    if !bytes.is_empty() {
        let alloc = c.data().alloc.clone().ok_or(Status::InvalidMemoryAccess)?;
        address = alloc
            .call(&mut *c, bytes.len() as i32)
            .map_err(Fail::Trap)?;
        if address == 0 {
            return Err(Status::InvalidMemoryAccess.into());
        }
        write(c, address, bytes)?;
    }
    write_u32(c, ptr_ptr, address as u32)?;
    write_u32(c, size_ptr, bytes.len() as u32)
}

fn stream_of(
    c: &Call,
) -> Result<std::sync::Arc<std::sync::Mutex<crate::stream::StreamState>>, Fail> {
    c.data()
        .stream
        .clone()
        .ok_or(Fail::Status(Status::BadArgument))
}

/// Runs `f` on the header map `map` of the current stream (or the `http_call` answer).
fn with_map<T>(c: &mut Call, map: i32, f: impl FnOnce(&mut Headers) -> T) -> Result<T, Fail> {
    let map = MapType::from_u32(map as u32).ok_or(Status::BadArgument)?;
    match map {
        // Envoy fills these only during the metadata callbacks of gRPC *streams*; a unary call
        // never has them, so the map is absent (`BadArgument`; pairs read as empty).
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata => {
            Err(Status::BadArgument.into())
        }
        MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers => {
            let reply = c.data().call_response.as_ref().ok_or(Status::BadArgument)?;
            let mut headers = Headers::default();
            if map == MapType::HttpCallResponseHeaders && !reply.fail {
                headers.add(":status", reply.status.to_string().as_bytes());
                for (k, v) in &reply.headers {
                    headers.add(k, v.as_bytes());
                }
            }
            // The answer is read-only for the module: changes are dropped.
            Ok(f(&mut headers))
        }
        _ => {
            let stream = stream_of(c)?;
            let me = (c.data().instance_id, c.data().current_context, map);
            let mut stream = lock(&stream);
            if stream.released.contains(&me) {
                // Envoy: "requested map type is not currently available".
                return Err(if stream.access_log_phase {
                    Status::NotFound
                } else {
                    Status::BadArgument
                }
                .into());
            }
            let headers = stream.map(map).ok_or(Status::BadArgument)?;
            Ok(f(headers))
        }
    }
}

pub(crate) fn define(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Call, level: i32, ptr: i32, len: i32| {
            ret((|| {
                let level = LogLevel::from_u32(level as u32).ok_or(Status::BadArgument)?;
                let message = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
                let name = c.data().plugin_name.clone();
                c.data().host.log(level, &name, message);
                Ok(())
            })())
        },
    )?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: Call, out: i32| {
        let level = *lock(&c.data().host.inner.log_level) as u32;
        ret(write_u32(&mut c, out, level))
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Call, out: i32| {
            let now = c.data().host.now_nanos();
            ret(write(&mut c, out, &now.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Call, period: i32| {
            let now = c.data().host.now_nanos();
            let state = c.data_mut();
            state.tick_period_ms = period as u32;
            state.next_tick_nanos = now + u64::from(period as u32) * 1_000_000;
            ret(Ok(()))
        },
    )?;

    // ---- buffers ----
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Call, kind: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                let kind = BufferType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
                let buffer = buffer(&c, kind)?;
                let start = start as u32 as usize;
                if start > buffer.len() {
                    return Err(Status::BadArgument.into());
                }
                let end = start.saturating_add(max as u32 as usize).min(buffer.len());
                return_bytes(&mut c, &buffer[start..end], ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Call, kind: i32, start: i32, len: i32, ptr: i32, size: i32| {
            ret((|| {
                let kind = BufferType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
                let data = read(&mut c, ptr, size)?;
                let stream = stream_of(&c)?;
                let mut stream = lock(&stream);
                let body = match kind {
                    BufferType::RequestBody => &mut stream.request_body,
                    BufferType::ResponseBody => &mut stream.response_body,
                    _ => return Err(Status::NotFound.into()),
                };
                // Envoy's Buffer::copyFrom: replace a prefix, prepend, or append; nothing else.
                let (start, len) = (start as u32 as usize, len as u32 as usize);
                if start == 0 {
                    body.drain(..len.min(body.len()));
                    body.splice(0..0, data);
                } else if start >= body.len() {
                    body.extend_from_slice(&data);
                } else {
                    return Err(Status::BadArgument.into());
                }
                Ok(())
            })())
        },
    )?;

    // ---- header maps ----
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Call, map: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                if let Some(status) = *lock(&c.data().host.inner.header_map_fault) {
                    return Err(status.into());
                }
                let grpc_metadata =
                    [MapType::GrpcInitialMetadata, MapType::GrpcTrailingMetadata].map(|m| m as i32);
                if grpc_metadata.contains(&map) {
                    // Envoy: an absent map reads as no pairs, with Ok.
                    return return_bytes(&mut c, &[], ptr_ptr, size_ptr);
                }
                let pairs = with_map(&mut c, map, |h| encode_pairs(&h.pairs))?;
                // Envoy hands an empty map back as no data at all.
                let pairs = if pairs.len() == 4 { Vec::new() } else { pairs };
                return_bytes(&mut c, &pairs, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Call, map: i32, ptr: i32, size: i32| {
            ret((|| {
                let bytes = read(&mut c, ptr, size)?;
                let pairs = decode_pairs(&bytes).ok_or(Status::BadArgument)?;
                with_map(&mut c, map, |h| {
                    // Envoy removes every key named in the new map, then adds the pairs.
                    for (k, _) in &pairs {
                        h.remove(&String::from_utf8_lossy(k));
                    }
                    for (k, v) in &pairs {
                        h.add(&String::from_utf8_lossy(k), v);
                    }
                })
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Call, map: i32, key: i32, key_len: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                // Envoy returns the first value of a repeated header.
                let value = with_map(&mut c, map, |h| h.get(&key).map(<[u8]>::to_vec))?
                    .ok_or(Status::NotFound)?;
                return_bytes(&mut c, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Call, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                let value = read(&mut c, value, value_len)?;
                with_map(&mut c, map, |h| h.replace(&key, &value))
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Call, map: i32, key: i32, key_len: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                with_map(&mut c, map, |h| h.remove(&key))
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Call, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                let value = read(&mut c, value, value_len)?;
                with_map(&mut c, map, |h| h.add(&key, &value))
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Call, map: i32, out: i32| {
            ret((|| {
                let size = with_map(&mut c, map, |h| encode_pairs(&h.pairs).len())?;
                write_u32(&mut c, out, size as u32)
            })())
        },
    )?;

    // ---- properties ----
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Call, path: i32, path_len: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                let path = read(&mut c, path, path_len)?;
                let value =
                    crate::properties::get_property(c.data(), &path).ok_or(Status::NotFound)?;
                return_bytes(&mut c, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Call, path: i32, path_len: i32, value: i32, value_len: i32| {
            ret((|| {
                let path = read(&mut c, path, path_len)?;
                let value = read(&mut c, value, value_len)?;
                let stream = stream_of(&c).map_err(|_| Status::NotFound)?;
                let mut stream = lock(&stream);
                let key = format!("wasm.{}", String::from_utf8_lossy(&path).replace('\0', "."));
                stream.filter_state.insert(key, value);
                Ok(())
            })())
        },
    )?;

    // ---- shared data and queues ----
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Call, key: i32, key_len: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                let vm_id = c.data().vm_id.clone();
                let found = lock(&c.data().host.inner.shared).get(&vm_id, &key);
                let (value, cas) = found.ok_or(Status::NotFound)?;
                return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
                write_u32(&mut c, cas_ptr, cas)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Call, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32| {
            ret((|| {
                let key = read_str(&mut c, key, key_len)?;
                let value = read(&mut c, value, value_len)?;
                let vm_id = c.data().vm_id.clone();
                match lock(&c.data().host.inner.shared).set(&vm_id, &key, &value, cas as u32) {
                    Status::Ok => Ok(()),
                    status => Err(status.into()),
                }
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Call, name: i32, name_len: i32, out: i32| {
            ret((|| {
                let name = read_str(&mut c, name, name_len)?;
                let owner = (c.data().instance_id, c.data().root_context);
                let vm_id = c.data().vm_id.clone();
                let id = lock(&c.data().host.inner.queues).register(&vm_id, &name, owner);
                write_u32(&mut c, out, id)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Call, vm: i32, vm_len: i32, name: i32, name_len: i32, out: i32| {
            ret((|| {
                let vm_id = read_str(&mut c, vm, vm_len)?;
                let name = read_str(&mut c, name, name_len)?;
                let id = lock(&c.data().host.inner.queues)
                    .by_name
                    .get(&(vm_id, name))
                    .copied()
                    .ok_or(Status::NotFound)?;
                write_u32(&mut c, out, id)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Call, id: i32, ptr: i32, len: i32| {
            ret((|| {
                let data = read(&mut c, ptr, len)?;
                let mut queues = lock(&c.data().host.inner.queues);
                let queue = queues
                    .queues
                    .get_mut(&(id as u32))
                    .ok_or(Status::NotFound)?;
                queue.items.push_back(data);
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Call, id: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                let item = {
                    let mut queues = lock(&c.data().host.inner.queues);
                    let queue = queues
                        .queues
                        .get_mut(&(id as u32))
                        .ok_or(Status::NotFound)?;
                    queue.items.pop_front().ok_or(Status::Empty)?
                };
                return_bytes(&mut c, &item, ptr_ptr, size_ptr)
            })())
        },
    )?;

    // ---- stream control ----
    for (name, fixed) in [
        ("proxy_continue_request", Some(0)),
        ("proxy_continue_response", Some(1)),
    ] {
        linker.func_wrap("env", name, move |c: Call| {
            ret(continue_stream(&c, fixed.unwrap_or(0)))
        })?;
    }
    linker.func_wrap("env", "proxy_continue_stream", |c: Call, kind: i32| {
        ret(continue_stream(&c, kind))
    })?;
    linker.func_wrap("env", "proxy_close_stream", |c: Call, kind: i32| {
        ret((|| {
            if !(0..=3).contains(&kind) {
                return Err(Status::BadArgument.into());
            }
            let stream = stream_of(&c)?;
            lock(&stream).reset = true;
            Ok(())
        })())
    })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Call,
         status: i32,
         details: i32,
         details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         grpc_status: i32| {
            ret((|| {
                let details = read(&mut c, details, details_len)?;
                let body = read(&mut c, body, body_len)?;
                let headers = read(&mut c, headers, headers_len)?;
                let headers = decode_pairs(&headers).ok_or(Status::BadArgument)?;
                let stream = stream_of(&c)?;
                let mut stream = lock(&stream);
                if stream.local_response.is_none() {
                    stream.local_response = Some(LocalResponse {
                        status: status as u32 as u16,
                        details: String::from_utf8_lossy(&details).into_owned(),
                        body,
                        headers: headers
                            .into_iter()
                            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                            .collect(),
                        grpc_status: grpc_status as u32,
                    });
                }
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Call, id: i32| ret(set_effective_context(&mut c, id as u32)),
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: Call| {
        c.data_mut().done_requested = true;
        ret(Ok(()))
    })?;

    // ---- http_call ----
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Call,
         upstream: i32,
         upstream_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         trailers: i32,
         trailers_len: i32,
         timeout_ms: i32,
         token_ptr: i32| {
            ret((|| {
                let cluster = read_str(&mut c, upstream, upstream_len)?;
                let headers = pairs_of(&read(&mut c, headers, headers_len)?)?;
                let body = read(&mut c, body, body_len)?;
                let trailers = pairs_of(&read(&mut c, trailers, trailers_len)?)?;
                // Envoy refuses a call without these pseudo-headers.
                for required in [":method", ":path", ":authority"] {
                    if !headers.iter().any(|(k, _)| k == required) {
                        return Err(Status::BadArgument.into());
                    }
                }
                let timeout = Duration::from_millis(u64::from(timeout_ms as u32));
                let request = HttpCallRequest {
                    cluster: cluster.clone(),
                    headers,
                    body,
                    trailers,
                    timeout,
                };
                let reply = {
                    let mut upstreams = lock(&c.data().host.inner.upstreams);
                    // Envoy answers an unknown cluster with BadArgument at dispatch.
                    let answer = upstreams.get_mut(&cluster).ok_or(Status::BadArgument)?;
                    answer(&request)
                };
                let (delay, reply) = if reply.delay > timeout {
                    (timeout, HttpCallReply::failure())
                } else {
                    (reply.delay, reply)
                };
                let now = c.data().host.now_nanos();
                let state = c.data_mut();
                state.next_token += 1;
                let token = state.next_token;
                state.pending_calls.push(PendingCall {
                    token,
                    context_id: state.current_context,
                    due_nanos: now + delay.as_nanos() as u64,
                    reply,
                });
                write_u32(&mut c, token_ptr, token)
            })())
        },
    )?;

    // ---- gRPC (unary calls; streams are not implemented and trap) ----
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: Call,
         service: i32,
         service_len: i32,
         service_name: i32,
         service_name_len: i32,
         method: i32,
         method_len: i32,
         metadata: i32,
         metadata_len: i32,
         message: i32,
         message_len: i32,
         timeout_ms: i32,
         token_ptr: i32| {
            ret((|| {
                let target = read(&mut c, service, service_len)?;
                let service = read(&mut c, service_name, service_name_len)?;
                let method = read(&mut c, method, method_len)?;
                let metadata = read(&mut c, metadata, metadata_len)?;
                let message = read(&mut c, message, message_len)?;
                let cluster = grpc_cluster(&c, &target)?;
                let metadata = decode_pairs(&metadata).ok_or(Status::BadArgument)?;
                let timeout = Duration::from_millis(u64::from(timeout_ms as u32));
                let request = GrpcRequest {
                    plugin: c.data().plugin_name.clone(),
                    cluster: cluster.clone(),
                    service: String::from_utf8_lossy(&service).into_owned(),
                    method: String::from_utf8_lossy(&method).into_owned(),
                    initial_metadata: metadata
                        .into_iter()
                        .map(|(k, v)| (String::from_utf8_lossy(&k).to_ascii_lowercase(), v))
                        .collect(),
                    message,
                    timeout,
                };
                let handler = lock(&c.data().host.inner.grpc_services)
                    .get(&cluster)
                    .cloned()
                    .ok_or(Status::InternalFailure)?;
                lock(&c.data().host.inner.grpc_calls).push(request.clone());
                // Called without a lock held: the handler may use the host.
                let answer = handler(&request);
                let (delay, outcome) = grpc_outcome(answer, timeout);
                let now = c.data().host.now_nanos();
                let state = c.data_mut();
                state.next_grpc_token = state.next_grpc_token.wrapping_add(CALLOUT_TOKEN_STEP);
                let token = state.next_grpc_token;
                // Outside a stream's callback (start-up, ticks) the caller is the root context.
                let origin = if state.stream.is_some() {
                    state.current_context
                } else {
                    state.root_context
                };
                state.pending_grpc.push(PendingGrpc {
                    token,
                    origin,
                    orphaned: false,
                    due_nanos: now.saturating_add(delay.as_nanos() as u64),
                    outcome,
                });
                write_u32(&mut c, token_ptr, token)
            })())
        },
    )?;
    // For a unary call, close and cancel are the same in Envoy: the call is dropped with no
    // callback. A stream token is NotFound (host-test opens none); any other BadArgument.
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |mut c: Call, token: i32| {
            ret((|| {
                let token = token as u32;
                match token & 3 {
                    GRPC_CALL_TOKEN_TYPE => {
                        let calls = &mut c.data_mut().pending_grpc;
                        let before = calls.len();
                        calls.retain(|call| call.token != token);
                        if calls.len() == before {
                            return Err(Status::NotFound.into());
                        }
                        Ok(())
                    }
                    GRPC_STREAM_TOKEN_TYPE => Err(Status::NotFound.into()),
                    _ => Err(Status::BadArgument.into()),
                }
            })())
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Call, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| {
            ret((|| {
                let (code, message) = c.data().status.clone();
                write_u32(&mut c, code_ptr, code)?;
                return_bytes(&mut c, message.as_bytes(), ptr_ptr, size_ptr)
            })())
        },
    )?;

    // ---- foreign functions ----
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Call,
         name: i32,
         name_len: i32,
         args: i32,
         args_len: i32,
         ptr_ptr: i32,
         size_ptr: i32| {
            ret((|| {
                let name = read_str(&mut c, name, name_len)?;
                let args = read(&mut c, args, args_len)?;
                let function = lock(&c.data().host.inner.foreign)
                    .get(&name)
                    .cloned()
                    .ok_or(Status::NotFound)?;
                let result = function(&args);
                match result {
                    Ok(bytes) => {
                        if ptr_ptr != 0 {
                            return_bytes(&mut c, &bytes, ptr_ptr, size_ptr)?;
                        }
                        Ok(())
                    }
                    Err(status) => Err(status.into()),
                }
            })())
        },
    )?;

    // ---- metrics ----
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Call, kind: i32, name: i32, name_len: i32, out: i32| {
            ret((|| {
                let kind = MetricType::from_u32(kind as u32).ok_or(Status::BadArgument)?;
                let name = read_str(&mut c, name, name_len)?;
                let id = {
                    let mut metrics = lock(&c.data().host.inner.metrics);
                    match metrics.ids.get(&name) {
                        Some(id) => *id,
                        None => {
                            let id = metrics.by_id.len() as u32;
                            metrics.by_id.push((name.clone(), kind, 0, Vec::new()));
                            metrics.ids.insert(name, id);
                            id
                        }
                    }
                };
                write_u32(&mut c, out, id)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: Call, id: i32, offset: i64| {
            ret((|| {
                let mut metrics = lock(&c.data().host.inner.metrics);
                let metric = metrics
                    .by_id
                    .get_mut(id as u32 as usize)
                    .ok_or(Status::NotFound)?;
                match metric.1 {
                    MetricType::Counter if offset < 0 => Err(Status::BadArgument.into()),
                    MetricType::Counter | MetricType::Gauge => {
                        metric.2 = metric.2.saturating_add(offset);
                        Ok(())
                    }
                    MetricType::Histogram => Err(Status::BadArgument.into()),
                }
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: Call, id: i32, value: i64| {
            ret((|| {
                let mut metrics = lock(&c.data().host.inner.metrics);
                let metric = metrics
                    .by_id
                    .get_mut(id as u32 as usize)
                    .ok_or(Status::NotFound)?;
                match metric.1 {
                    // Envoy moves a counter up to the recorded value; it never goes down.
                    MetricType::Counter => metric.2 = metric.2.max(value),
                    MetricType::Gauge => metric.2 = value,
                    MetricType::Histogram => {
                        metric.3.push(value as u64);
                        metric.2 += 1;
                    }
                }
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Call, id: i32, out: i32| {
            ret((|| {
                let value = {
                    let metrics = lock(&c.data().host.inner.metrics);
                    let metric = metrics
                        .by_id
                        .get(id as u32 as usize)
                        .ok_or(Status::NotFound)?;
                    if metric.1 == MetricType::Histogram {
                        return Err(Status::BadArgument.into());
                    }
                    metric.2
                };
                write(&mut c, out, &value.to_le_bytes())
            })())
        },
    )?;
    Ok(())
}

/// Only the root context and the stream that is running (or waiting, during a tick) can be
/// made effective here.
fn set_effective_context(c: &mut Call, id: u32) -> Out {
    let stream_context = c
        .data()
        .stream
        .as_ref()
        .and_then(|s| lock(s).context_of(&c.data().plugin_name));
    if id == c.data().root_context || stream_context == Some(id) {
        c.data_mut().current_context = id;
        Ok(())
    } else {
        Err(Status::BadArgument.into())
    }
}

fn continue_stream(c: &Call, kind: i32) -> Out {
    let stream = stream_of(c)?;
    let mut stream = lock(&stream);
    match kind {
        0 => stream.continued_request = true,
        1 => stream.continued_response = true,
        _ => return Err(Status::BadArgument.into()),
    }
    Ok(())
}

fn pairs_of(bytes: &[u8]) -> Result<Vec<(String, String)>, Fail> {
    Ok(decode_pairs(bytes)
        .ok_or(Status::BadArgument)?
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect())
}

/// What a unary call whose timeout expires ends with in Envoy 1.40 (seen by
/// `tests/tests/conformance_grpc.rs`): the router's timeout local reply (504), which a gRPC
/// request gets as `grpc-status` UNAVAILABLE (14, Envoy's `httpToGrpcStatus(504)`), not
/// DEADLINE_EXCEEDED; the message carries the response code details.
pub(crate) const GRPC_TIMEOUT_STATUS: u32 = 14;
const GRPC_TIMEOUT_MESSAGE: &str = "upstream request timeout{response_timeout}";
/// INTERNAL: Envoy's status for a call that ended OK without a response message.
const GRPC_INTERNAL: u32 = 13;

/// When and how a scripted answer reaches the filter: a delay past a non-zero timeout ends
/// the call at the timeout.
fn grpc_outcome(answer: crate::host::GrpcAnswer, timeout: Duration) -> (Duration, GrpcOutcome) {
    if !timeout.is_zero() && answer.delay > timeout {
        let message = GRPC_TIMEOUT_MESSAGE.to_string();
        return (timeout, GrpcOutcome::Status(GRPC_TIMEOUT_STATUS, message));
    }
    let outcome = match answer.outcome {
        GrpcOutcome::Status(0, _) => GrpcOutcome::Status(GRPC_INTERNAL, String::new()),
        other => other,
    };
    (answer.delay, outcome)
}

/// `envoy.config.core.v3.GrpcService`, the fields host-test reads.
#[derive(Clone, PartialEq, prost::Message)]
struct GrpcServiceProto {
    #[prost(message, optional, tag = "1")]
    envoy_grpc: Option<EnvoyGrpcProto>,
    #[prost(bytes = "vec", optional, tag = "2")]
    google_grpc: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EnvoyGrpcProto {
    #[prost(string, tag = "1")]
    cluster_name: String,
}

/// The cluster of `proxy_grpc_call`'s first argument, by Envoy's rule (`Context::grpcCall`):
/// bytes that parse as a serialized `GrpcService` are one; only bytes that do not parse are a
/// plain cluster name, refused with `ParseFailure` when the cluster is unknown. A parsed
/// service without `envoy_grpc` gets no client (`BadArgument`); one naming an unknown cluster
/// fails to start (`InternalFailure`). Google gRPC services are not modelled (`BadArgument`).
fn grpc_cluster(c: &Call, target: &[u8]) -> Result<String, Fail> {
    use prost::Message;
    let known = |name: &str| lock(&c.data().host.inner.grpc_services).contains_key(name);
    match GrpcServiceProto::decode(target) {
        Ok(service) => match service.envoy_grpc {
            Some(envoy) if known(&envoy.cluster_name) => Ok(envoy.cluster_name),
            Some(_) => Err(Status::InternalFailure.into()),
            None => Err(Status::BadArgument.into()),
        },
        Err(_) => {
            let name = String::from_utf8_lossy(target).into_owned();
            if known(&name) {
                Ok(name)
            } else {
                Err(Status::ParseFailure.into())
            }
        }
    }
}

/// The bytes of a buffer as the current callback sees them.
fn buffer(c: &Call, kind: BufferType) -> Result<Vec<u8>, Fail> {
    let state = c.data();
    Ok(match kind {
        BufferType::VmConfiguration => state.vm_config.clone(),
        BufferType::PluginConfiguration => state.plugin_config.clone(),
        BufferType::HttpCallResponseBody => {
            let reply = state.call_response.as_ref().ok_or(Status::NotFound)?;
            if reply.fail {
                Vec::new()
            } else {
                reply.body.clone()
            }
        }
        // Envoy's buffer holds the message only while `proxy_on_grpc_receive` runs.
        BufferType::GrpcReceiveBuffer => state.grpc_message.clone().unwrap_or_default(),
        BufferType::RequestBody | BufferType::ResponseBody => {
            let stream = stream_of(c)?;
            let stream = lock(&stream);
            if kind == BufferType::RequestBody {
                stream.request_body.clone()
            } else {
                stream.response_body.clone()
            }
        }
        _ => return Err(Status::NotFound.into()),
    })
}
