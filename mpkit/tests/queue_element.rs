//! What a named queue (or value) holds: element types known by their name
//! without module paths, so two programs with the same definition share a
//! queue, and mismatches that name both sides.

mod common;

use common::watchdog;
use mpkit::Process;
use mpkit::queue::Queue;
use mpkit::shm::{RawValue, SharedMemory, ShmError, Value};

fn name(tag: &str) -> String {
    format!("mpkit_test_{}_{tag}", std::process::id())
}

/// One program's `Job`.
mod producer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Job {
        pub id: u32,
        pub text: String,
    }
}

/// Another program's `Job`: the same definition under another path.
mod consumer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Job {
        pub id: u32,
        pub text: String,
    }
}

/// A type of another name.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Task {
    id: u32,
    text: String,
}

#[test]
fn two_definitions_of_the_same_job_share_a_named_queue() {
    let _w = watchdog(30);
    let name = name("same_job");
    let q: Queue<consumer::Job> = Queue::create(&name, 0, 4096).unwrap();
    let child = Process::spawn(
        |name: String| {
            let q: Queue<producer::Job> = Queue::open(&name).unwrap();
            for id in 0..3 {
                let text = format!("job {id}");
                q.put(producer::Job { id, text }).unwrap();
            }
        },
        name.clone(),
    )
    .unwrap();
    child.join().unwrap();
    for id in 0..3 {
        let text = format!("job {id}");
        assert_eq!(q.get().unwrap(), consumer::Job { id, text });
    }
    let info = mpkit::admin::inspect(&name).unwrap();
    assert_eq!(info.element.as_deref(), Some("Job (postcard)"));
}

#[test]
fn a_queue_of_another_element_names_both_in_the_error() {
    let _w = watchdog(30);
    let name = name("other_job");
    let _q: Queue<consumer::Job> = Queue::create(&name, 0, 4096).unwrap();
    let child = Process::spawn(
        |name: String| match Queue::<Task>::open(&name) {
            Err(e) => e.to_string(),
            Ok(_) => "opened".to_string(),
        },
        name.clone(),
    )
    .unwrap();
    let message = child.join().unwrap();
    assert!(
        message.contains("`Job (postcard)`") && message.contains("`Task (postcard)`"),
        "{message}"
    );
    match Queue::<consumer::Job, mpkit::codec::Json>::open(&name) {
        Err(ShmError::WrongElement { holds, asked }) => {
            assert_eq!(
                (holds.as_str(), asked.as_str()),
                ("Job (postcard)", "Job (json)")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_chosen_element_name_joins_two_type_names() {
    let _w = watchdog(30);
    let name = name("chosen");
    let q: Queue<Task> = Queue::builder()
        .maxsize(4)
        .element_name("jobs.v2")
        .create(&name)
        .unwrap();
    assert_eq!(q.maxsize(), 4);
    let child = Process::spawn(
        |name: String| {
            let q: Queue<producer::Job> = Queue::builder()
                .element_name("jobs.v2")
                .open(&name)
                .unwrap();
            let text = "renamed".to_string();
            q.put(producer::Job { id: 9, text }).unwrap();
            match Queue::<producer::Job>::open(&name) {
                Err(ShmError::WrongElement { holds, asked }) => format!("{holds} / {asked}"),
                other => format!("{other:?}"),
            }
        },
        name.clone(),
    )
    .unwrap();
    assert_eq!(child.join().unwrap(), "jobs.v2 (postcard) / Job (postcard)");
    let text = "renamed".to_string();
    assert_eq!(q.get().unwrap(), Task { id: 9, text });
    let info = mpkit::admin::inspect(&name).unwrap();
    assert_eq!(info.element.as_deref(), Some("jobs.v2 (postcard)"));
}

#[test]
fn a_handle_carries_its_chosen_element_name() {
    let _w = watchdog(30);
    let q: Queue<u32> = Queue::builder().element_name("ticks").build().unwrap();
    let child = Process::spawn(|q: Queue<u32>| q.put(5).unwrap(), q.try_clone().unwrap()).unwrap();
    child.join().unwrap();
    assert_eq!(q.get().unwrap(), 5);
}

#[test]
fn plain_data_names_its_type_size_and_alignment() {
    let name = name("value");
    let _v = Value::create(&name, 7u64).unwrap();
    match Value::<f32>::open(&name) {
        Err(e @ ShmError::WrongElement { .. }) => assert_eq!(
            e.to_string(),
            "the object holds `u64 (8 bytes, alignment 8)`, not `f32 (4 bytes, alignment 4)`"
        ),
        other => panic!("{other:?}"),
    }
    // Same size, another name: still refused.
    assert!(matches!(
        Value::<i64>::open(&name),
        Err(ShmError::WrongElement { .. })
    ));
    let info = mpkit::admin::inspect(&name).unwrap();
    assert_eq!(info.element.as_deref(), Some("u64 (8 bytes, alignment 8)"));
}

#[test]
fn a_scribbled_element_record_reads_as_unreadable() {
    let name = name("scribbled");
    let _v = RawValue::create(&name, 1u32).unwrap();
    let raw = SharedMemory::open(&name).unwrap();
    let end = raw.size() - 64;
    for record in [&[200u8, b'x'][..], &[2, 0xff, 0xfe]] {
        raw.write(end, record).unwrap();
        match RawValue::<u16>::open(&name) {
            Err(ShmError::WrongElement { holds, .. }) => {
                assert_eq!(holds, "an unreadable element (4 bytes, alignment 4)")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened as u16"),
        }
        let info = mpkit::admin::inspect(&name).unwrap();
        assert_eq!(
            info.element.as_deref(),
            Some("an unreadable element (4 bytes, alignment 4)")
        );
    }
    // The record only explains: the header's hash still admits the right type.
    assert_eq!(RawValue::<u32>::open(&name).unwrap().get(), 1);
}
