//! The WASI preview1 functions a filter's standard library reaches for, implemented as Envoy
//! implements them: stdout/stderr go to the log (info/error), clocks read the harness clock,
//! `random_get` is seeded by the test, there are no files, arguments or environment.

use wasmtime::{Caller, Linker};

use crate::abi::LogLevel;
use crate::hostcalls::{read, write, write_u32, Fail};
use crate::plugin::VmState;

const MODULE: &str = "wasi_snapshot_preview1";
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const EFAULT: i32 = 21;

type Call<'a> = Caller<'a, VmState>;

fn errno(r: Result<(), Fail>) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(ESUCCESS),
        Err(Fail::Status(_)) => Ok(EFAULT),
        Err(Fail::Trap(e)) => Err(e),
    }
}

pub(crate) fn define(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Call, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            errno((|| {
                let mut text = Vec::new();
                for i in 0..iovs_len {
                    let iov = read(&mut c, iovs + i * 8, 8)?;
                    let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                    let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                    text.extend(read(&mut c, ptr, len)?);
                }
                let level = if fd == 1 {
                    LogLevel::Info
                } else {
                    LogLevel::Error
                };
                let name = c.data().plugin_name.clone();
                let message = String::from_utf8_lossy(&text).trim_end().to_string();
                if !message.is_empty() {
                    c.data().host.log(level, &name, message);
                }
                write_u32(&mut c, nwritten, text.len() as u32)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Call, id: i32, _precision: i64, out: i32| {
            let clock = *crate::host::lock(&c.data().host.inner.clock);
            let now = match id {
                0 => clock.realtime_nanos,
                1 => clock.monotonic_nanos,
                _ => return Ok(EINVAL),
            };
            errno(write(&mut c, out, &now.to_le_bytes()))
        },
    )?;
    linker.func_wrap(MODULE, "clock_res_get", |mut c: Call, id: i32, out: i32| {
        if !(0..=1).contains(&id) {
            return Ok(EINVAL);
        }
        errno(write(&mut c, out, &1u64.to_le_bytes()))
    })?;
    linker.func_wrap(MODULE, "random_get", |mut c: Call, ptr: i32, len: i32| {
        let mut bytes = vec![0u8; len as u32 as usize];
        c.data().host.random_bytes(&mut bytes);
        errno(write(&mut c, ptr, &bytes))
    })?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(MODULE, name, |mut c: Call, count: i32, size: i32| {
            errno(write_u32(&mut c, count, 0).and_then(|_| write_u32(&mut c, size, 0)))
        })?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(MODULE, name, |_: Call, _: i32, _: i32| Ok(ESUCCESS))?;
    }
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Call, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::format_err!("proc_exit({code})"))
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_: Call| Ok(ESUCCESS))?;
    linker.func_wrap(MODULE, "fd_close", |_: Call, _: i32| Ok(EBADF))?;
    linker.func_wrap(MODULE, "fd_prestat_get", |_: Call, _: i32, _: i32| {
        Ok(EBADF)
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: Call, _: i32, _: i32, _: i32| Ok(EBADF),
    )?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |_: Call, _: i32, _: i64, _: i32, _: i32| Ok(ENOSYS),
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |_: Call, _: i32, _: i32, _: i32, _: i32| Ok(ENOSYS),
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_get", |mut c: Call, fd: i32, out: i32| {
        if fd != 1 && fd != 2 {
            return Ok(EBADF);
        }
        // As Envoy: a character device with the right to write.
        let mut stat = [0u8; 24];
        stat[0] = 2;
        stat[8..16].copy_from_slice(&64u64.to_le_bytes());
        errno(write(&mut c, out, &stat))
    })?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Call, _: i32, _: i32, _: i32, nevents: i32| errno(write_u32(&mut c, nevents, 0)),
    )?;
    Ok(())
}
