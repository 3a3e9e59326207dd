//! Every toxic observed at socket level through a real link to a real upstream.

use std::io;
use std::time::Duration;

use shakedown_proxy::{Link, LinkConfig, ProxyError, Stream, ToxicKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};

use crate::support::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn passes_bytes_unchanged_without_toxics() {
    run(async {
        let link = start_link(echo_server().await);
        let mut client = connect(link.listen_addr()).await;
        let rtt = round_trip(&mut client, 4 << 20).await;
        assert!(rtt < Duration::from_secs(2), "4 MiB echo took {rtt:?}");
        assert!(round_trip(&mut client, 64).await < 100 * MS);
        link.stop().await;
    });
}

#[test]
fn latency_delays_each_round_trip() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("slow", latency(150), Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        for _ in 0..3 {
            let rtt = round_trip(&mut client, 100).await;
            assert!(rtt >= 150 * MS && rtt < 400 * MS, "rtt {rtt:?}");
        }
    });
}

#[test]
fn jitter_stays_within_bounds_and_varies() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("j", ToxicKind::Latency { latency_ms: 100, jitter_ms: 60 }, Stream::Upstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        let mut rtts = Vec::new();
        for _ in 0..12 {
            rtts.push(round_trip(&mut client, 10).await);
        }
        assert!(rtts.iter().all(|r| *r >= 40 * MS && *r < 350 * MS), "{rtts:?}");
        let spread = *rtts.iter().max().unwrap() - *rtts.iter().min().unwrap();
        assert!(spread >= 20 * MS, "jitter should vary the delay: {rtts:?}");
    });
}

#[test]
fn latency_is_pipelined_not_one_chunk_per_delay() {
    run(async {
        let (upstream, seen) = recording_server().await;
        let link = start_link(upstream);
        link.add_toxic(toxic("slow", latency(100), Stream::Upstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        let started = Instant::now();
        for _ in 0..20 {
            client.write_all(&[1u8; 1000]).await.unwrap();
            tokio::time::sleep(5 * MS).await;
        }
        eventually("all bytes arrive", || bytes_seen(&seen) == 20_000).await;
        let took = started.elapsed();
        assert!(took >= 100 * MS && took < 600 * MS, "20 chunks with 100 ms latency took {took:?}");
    });
}

#[test]
fn bandwidth_bounds_throughput() {
    run(async {
        let (upstream, seen) = recording_server().await;
        let link = start_link(upstream);
        link.add_toxic(toxic("bw", ToxicKind::Bandwidth { rate_kbs: 100 }, Stream::Upstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        let started = Instant::now();
        client.write_all(&vec![0u8; 50_000]).await.unwrap();
        eventually("50 KB arrive", || bytes_seen(&seen) == 50_000).await;
        let took = started.elapsed();
        assert!(took >= 450 * MS && took < 1500 * MS, "50 KB at 100 KB/s took {took:?}");
    });
}

#[test]
fn slow_connect_delays_the_upstream_accept() {
    run(async {
        let (upstream, seen) = recording_server().await;
        let link = start_link(upstream);
        link.add_toxic(toxic("sc", ToxicKind::SlowConnect { delay_ms: 300 }, Stream::Downstream)).unwrap();
        let started = Instant::now();
        let _client = connect(link.listen_addr()).await;
        assert!(started.elapsed() < 100 * MS, "the client's own connect is not delayed");
        eventually("the upstream accepts", || !seen.lock().unwrap().is_empty()).await;
        let accepted = seen.lock().unwrap()[0].accepted_at.unwrap() - started;
        assert!(accepted >= 300 * MS && accepted < 800 * MS, "upstream accepted after {accepted:?}");
    });
}

#[test]
fn timeout_drops_data_then_closes() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("t", ToxicKind::Timeout { timeout_ms: 300 }, Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        let started = Instant::now();
        client.write_all(b"anyone there?").await.unwrap();
        let (got, _) = read_to_end(&mut client).await;
        let took = started.elapsed();
        assert!(got.is_empty(), "no data passes a timeout toxic");
        assert!(took >= 280 * MS && took < 1000 * MS, "closed after {took:?}");
    });
}

#[test]
fn timeout_zero_holds_until_removed() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("hold", ToxicKind::Timeout { timeout_ms: 0 }, Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        client.write_all(b"lost").await.unwrap();
        let mut buf = [0u8; 16];
        let held = timeout(400 * MS, client.read(&mut buf)).await;
        assert!(held.is_err(), "neither data nor close while held: {held:?}");
        link.remove_toxic("hold").unwrap();
        assert!(round_trip(&mut client, 32).await < 200 * MS, "flows again once removed");
    });
}

#[test]
fn reset_peer_resets_the_client() {
    run(async {
        let link = start_link(echo_server().await);
        let mut client = connect(link.listen_addr()).await;
        round_trip(&mut client, 8).await;
        let started = Instant::now();
        link.add_toxic(toxic("rst", ToxicKind::ResetPeer { timeout_ms: 100 }, Stream::Downstream)).unwrap();
        let (_, ended) = read_to_end(&mut client).await;
        let err = ended.expect_err("a reset, not a clean close");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let took = started.elapsed();
        assert!(took >= 90 * MS && took < 600 * MS, "reset after {took:?}");
    });
}

#[test]
fn slicer_cuts_data_into_small_reads() {
    run(async {
        let (upstream, seen) = recording_server().await;
        let link = start_link(upstream);
        let slicer = ToxicKind::Slicer { average_size: 100, size_variation: 20, delay_us: 2000 };
        link.add_toxic(toxic("sl", slicer, Stream::Upstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        client.write_all(&vec![3u8; 10_000]).await.unwrap();
        eventually("10 KB arrive", || bytes_seen(&seen) == 10_000).await;
        let reads = seen.lock().unwrap()[0].reads.clone();
        assert!(reads.len() >= 30, "expected many small reads, got {}", reads.len());
        assert!(reads.iter().all(|r| r.1 <= 10_000 / 4), "no read holds most of the data: {reads:?}");
    });
}

#[test]
fn limit_data_closes_after_the_budget() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("lim", ToxicKind::LimitData { bytes: 1000 }, Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        client.write_all(&vec![5u8; 5000]).await.unwrap();
        let (got, _) = read_to_end(&mut client).await;
        assert_eq!(got.len(), 1000);
    });
}

#[test]
fn slow_close_delays_the_close() {
    run(async {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(b"bye").await.unwrap();
        });
        let link = start_link(upstream);
        link.add_toxic(toxic("sc", ToxicKind::SlowClose { delay_ms: 300 }, Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        let started = Instant::now();
        let (got, _) = read_to_end(&mut client).await;
        assert_eq!(got, b"bye");
        let took = started.elapsed();
        assert!(took >= 290 * MS && took < 1000 * MS, "closed after {took:?}");
    });
}

#[test]
fn down_refuses_and_cuts_then_up_restores() {
    run(async {
        let link = start_link(echo_server().await);
        let mut live = connect(link.listen_addr()).await;
        round_trip(&mut live, 8).await;
        link.set_enabled(false).await.unwrap();
        assert!(!link.enabled());
        let (_, _) = read_to_end(&mut live).await;
        let refused = tokio::net::TcpStream::connect(link.listen_addr()).await.map(|_| ());
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        link.set_enabled(true).await.unwrap();
        let mut again = connect(link.listen_addr()).await;
        assert!(round_trip(&mut again, 8).await < 200 * MS);
        eventually("the cut connection is gone", || link.connections() == 1).await;
    });
}

#[test]
fn starts_down_when_disabled() {
    run(async {
        let mut config = LinkConfig::new("down", any_port(), echo_server().await);
        config.enabled = false;
        let link = Link::start(config).unwrap();
        let refused = tokio::net::TcpStream::connect(link.listen_addr()).await.map(|_| ());
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        link.set_enabled(true).await.unwrap();
        round_trip(&mut connect(link.listen_addr()).await, 8).await;
    });
}

#[test]
fn toxicity_zero_never_applies_and_one_always_does() {
    run(async {
        let link = start_link(echo_server().await);
        let mut never = toxic("never", latency(300), Stream::Downstream);
        never.toxicity = 0.0;
        link.add_toxic(never).unwrap();
        for _ in 0..5 {
            assert!(round_trip(&mut connect(link.listen_addr()).await, 8).await < 150 * MS);
        }
        link.remove_toxic("never").unwrap();
        link.add_toxic(toxic("always", latency(300), Stream::Downstream)).unwrap();
        for _ in 0..3 {
            assert!(round_trip(&mut connect(link.listen_addr()).await, 8).await >= 300 * MS);
        }
    });
}

#[test]
fn toxicity_half_hits_some_connections() {
    run(async {
        let link = start_link(echo_server().await);
        let mut half = toxic("half", latency(150), Stream::Downstream);
        half.toxicity = 0.5;
        link.add_toxic(half).unwrap();
        let mut hit = 0;
        for _ in 0..16 {
            if round_trip(&mut connect(link.listen_addr()).await, 8).await >= 150 * MS {
                hit += 1;
            }
        }
        assert!((3..=13).contains(&hit), "toxicity 0.5 hit {hit} of 16 connections");
    });
}

#[test]
fn stream_direction_is_respected() {
    run(async {
        let (upstream, seen) = recording_server().await;
        let link = start_link(upstream);
        link.add_toxic(toxic("down-only", latency(300), Stream::Downstream)).unwrap();
        let mut client = connect(link.listen_addr()).await;
        eventually("the upstream accepts", || !seen.lock().unwrap().is_empty()).await;
        let sent = Instant::now();
        client.write_all(b"fast").await.unwrap();
        eventually("the bytes arrive", || bytes_seen(&seen) > 0).await;
        let arrived = seen.lock().unwrap()[0].reads[0].0 - sent;
        assert!(arrived < 150 * MS, "a downstream toxic must not delay upstream bytes: {arrived:?}");
        link.add_toxic(toxic("up", latency(300), Stream::Upstream)).unwrap();
        let sent = Instant::now();
        client.write_all(b"slow").await.unwrap();
        eventually("the bytes arrive", || bytes_seen(&seen) == 8).await;
        let arrived = seen.lock().unwrap()[0].reads.last().unwrap().0 - sent;
        assert!(arrived >= 300 * MS, "an upstream toxic delays upstream bytes: {arrived:?}");
    });
}

#[test]
fn toxics_change_live_connections() {
    run(async {
        let link = start_link(echo_server().await);
        let mut client = connect(link.listen_addr()).await;
        assert!(round_trip(&mut client, 1 << 20).await < 2000 * MS);
        link.add_toxic(toxic("slow", latency(200), Stream::Downstream)).unwrap();
        assert!(round_trip(&mut client, 16).await >= 200 * MS, "added to a live connection");
        link.remove_toxic("slow").unwrap();
        assert!(round_trip(&mut client, 16).await < 150 * MS, "removed from a live connection");
        assert!(round_trip(&mut client, 1 << 20).await < 2000 * MS, "bulk flows again");
        let mut changed = toxic("slow", latency(200), Stream::Downstream);
        link.add_toxic(changed.clone()).unwrap();
        changed.kind = latency(0);
        link.update_toxic(changed).unwrap();
        assert!(round_trip(&mut client, 16).await < 150 * MS, "updated on a live connection");
    });
}

#[test]
fn toxic_edits_report_errors() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("a", latency(1), Stream::Upstream)).unwrap();
        let dup = link.add_toxic(toxic("a", latency(2), Stream::Downstream));
        assert!(matches!(dup, Err(ProxyError::ToxicExists(name)) if name == "a"));
        assert!(matches!(link.remove_toxic("b"), Err(ProxyError::ToxicNotFound(_))));
        assert!(matches!(
            link.update_toxic(toxic("b", latency(1), Stream::Upstream)),
            Err(ProxyError::ToxicNotFound(_))
        ));
        assert_eq!(link.toxics().len(), 1);
        let bad = LinkConfig::new("far", "10.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(), any_port());
        assert!(matches!(Link::start(bad), Err(ProxyError::NotLoopback(_))));
    });
}

#[test]
fn guard_removes_its_toxic() {
    run(async {
        let link = std::sync::Arc::new(start_link(echo_server().await));
        let guard = link.add_toxic_guarded(toxic("g", latency(1), Stream::Upstream)).unwrap();
        assert_eq!(link.toxics().len(), 1);
        drop(guard);
        assert!(link.toxics().is_empty());
    });
}

#[test]
fn failed_upstream_closes_the_client_promptly() {
    run(async {
        let free = TcpListener::bind(any_port()).await.unwrap().local_addr().unwrap();
        let link = start_link(free);
        let mut client = connect(link.listen_addr()).await;
        let started = Instant::now();
        let (got, _) = read_to_end(&mut client).await;
        assert!(got.is_empty());
        assert!(started.elapsed() < 500 * MS, "closed after {:?}", started.elapsed());
    });
}

#[test]
fn stop_closes_listener_and_connections() {
    run(async {
        let link = start_link(echo_server().await);
        let mut client = connect(link.listen_addr()).await;
        round_trip(&mut client, 8).await;
        link.stop().await;
        let (_, _) = read_to_end(&mut client).await;
        assert!(tokio::net::TcpStream::connect(link.listen_addr()).await.is_err());
        assert_eq!(link.connections(), 0);
    });
}

#[test]
fn garbage_on_the_proxy_socket_passes_or_closes_without_harm() {
    run(async {
        use rand::{RngCore, SeedableRng};
        let link = start_link(echo_server().await);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let mut client = connect(link.listen_addr()).await;
            let mut junk = vec![0u8; 1 + (rng.next_u32() % 5000) as usize];
            rng.fill_bytes(&mut junk);
            client.write_all(&junk).await.unwrap();
            // Closing abruptly with unread data makes the kernel send an RST.
            drop(client);
        }
        assert!(round_trip(&mut connect(link.listen_addr()).await, 1000).await < 200 * MS);
        eventually("abandoned connections are reaped", || link.connections() == 0).await;
    });
}

#[test]
fn bytes_stay_in_order_across_mode_switches() {
    run(async {
        let link = start_link(echo_server().await);
        let client = connect(link.listen_addr()).await;
        let (mut reader, mut writer) = client.into_split();
        const TOTAL: usize = 32 << 20;
        let pattern = |i: usize| (i % 251) as u8;
        let send = tokio::spawn(async move {
            let mut offset = 0;
            while offset < TOTAL {
                // Mixed sizes, so the pipes alternate between copying and splicing.
                let len = if (offset / 4096) % 3 == 0 { 100 } else { 200_000 }.min(TOTAL - offset);
                let chunk: Vec<u8> = (offset..offset + len).map(pattern).collect();
                writer.write_all(&chunk).await.unwrap();
                offset += len;
            }
        });
        let toggle = async {
            for i in 0..40 {
                let t = toxic("zero", latency(0), if i % 2 == 0 { Stream::Upstream } else { Stream::Downstream });
                link.add_toxic(t).unwrap();
                tokio::time::sleep(3 * MS).await;
                link.remove_toxic("zero").unwrap();
                tokio::time::sleep(2 * MS).await;
            }
        };
        let check = async {
            let mut buf = vec![0u8; 1 << 16];
            let mut offset = 0;
            while offset < TOTAL {
                let n = timeout(IO_TIMEOUT, reader.read(&mut buf)).await.expect("echo stalled").unwrap();
                assert!(n > 0, "closed early at {offset}");
                assert!(
                    buf[..n].iter().enumerate().all(|(i, b)| *b == pattern(offset + i)),
                    "bytes out of order near {offset}"
                );
                offset += n;
            }
        };
        tokio::join!(toggle, check);
        send.await.unwrap();
    });
}

/// Bulk data under a 1 ms latency toxic goes through the kernel pipe as the
/// delay line; every byte arrives, in order, and no sooner than the toxic says.
#[test]
fn bulk_bytes_keep_order_through_a_spliced_delay_line() {
    run(async {
        let link = start_link(echo_server().await);
        link.add_toxic(toxic("up", latency(1), Stream::Upstream)).unwrap();
        link.add_toxic(toxic("down", latency(1), Stream::Downstream)).unwrap();
        let client = connect(link.listen_addr()).await;
        let (mut reader, mut writer) = client.into_split();
        const TOTAL: usize = 16 << 20;
        let pattern = |i: usize| (i % 253) as u8;
        let started = std::time::Instant::now();
        let send = tokio::spawn(async move {
            let chunk: Vec<u8> = (0..TOTAL).map(pattern).collect();
            writer.write_all(&chunk).await.unwrap();
        });
        let mut buf = vec![0u8; 1 << 16];
        let mut offset = 0;
        while offset < TOTAL {
            let n = timeout(IO_TIMEOUT, reader.read(&mut buf)).await.expect("echo stalled").unwrap();
            assert!(n > 0, "closed early at {offset}");
            if offset == 0 {
                assert!(started.elapsed() >= 2 * MS, "the first bytes wait out both latencies");
            }
            assert!(
                buf[..n].iter().enumerate().all(|(i, b)| *b == pattern(offset + i)),
                "bytes out of order near {offset}"
            );
            offset += n;
        }
        send.await.unwrap();
    });
}
