//! PROXY protocol v2 headers (`picket::listener::proxy::parse`), which a
//! load balancer sends and, when a peer is trusted by mistake, an attacker
//! writes. The input's first byte picks the length bound (from the smallest
//! allowed up to 4 KiB more); the rest is the start of a connection. The
//! parser must never panic, never claim more bytes than it was given or
//! than the bound, and decide the same way however the bytes arrive: every
//! prefix of a header is incomplete, the header alone parses as the whole
//! input did, and more bytes never change an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket::listener::proxy::{parse, Header, FIXED_LEN, MIN_HEADER_BOUND};

fuzz_target!(|data: &[u8]| {
    let Some((&bound, input)) = data.split_first() else {
        return;
    };
    let max = MIN_HEADER_BOUND + usize::from(bound) * 16;
    let whole = parse(input, max);
    match &whole {
        Ok(Some((header, len))) => {
            let len = *len;
            assert!(len >= FIXED_LEN && len <= input.len() && len <= max);
            assert_eq!(parse(&input[..len], max), whole, "the header alone");
            for cut in [0, FIXED_LEN - 1, FIXED_LEN, len - 1] {
                if cut < len {
                    assert_eq!(parse(&input[..cut], max), Ok(None), "cut at {cut}");
                }
            }
            if let Header::Proxied(client) = header {
                // Only the address families that carry one give a client.
                assert!(matches!(input[13] >> 4, 1 | 2));
                assert_eq!(client.is_ipv4(), input[13] >> 4 == 1);
            }
        }
        Ok(None) => {
            assert!(input.len() < max, "an incomplete header is within the bound");
            let mut longer = input.to_vec();
            longer.truncate(input.len().saturating_sub(1));
            assert_eq!(parse(&longer, max), Ok(None), "a shorter prefix too");
        }
        Err(error) => {
            let mut longer = input.to_vec();
            longer.extend_from_slice(&[0x55; 64]);
            assert_eq!(parse(&longer, max).as_ref(), Err(error), "more bytes change nothing");
        }
    }
});
