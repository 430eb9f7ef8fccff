//! The schema: created by the store, idempotent, safe when replicas start
//! at once.

mod support;

use std::sync::{Arc, Barrier};

use harbor_store_postgres::{SCHEMA_VERSION, Store};

fn migrations(client: &mut postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, name FROM harbor_schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn migrations_apply_once_and_opening_again_changes_nothing() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let first = Store::open(support::config(&pg, "a")).unwrap();
    let mut client = pg.client();
    let applied = migrations(&mut client);
    assert_eq!(applied.len(), SCHEMA_VERSION as usize);
    assert_eq!(applied.last().unwrap().0, SCHEMA_VERSION);
    // A second store, and the first again after a stop: nothing to apply.
    let second = Store::open(support::config(&pg, "b")).unwrap();
    assert!(first.shutdown(support::PATIENCE));
    let again = Store::open(support::config(&pg, "a")).unwrap();
    assert_eq!(migrations(&mut client), applied);
    for table in ["harbor_jobs", "harbor_replicas", "harbor_schema_migrations"] {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename = $1",
                &[&table],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{table}");
    }
    drop((second, again));
}

#[test]
fn replicas_starting_at_once_apply_each_migration_exactly_once() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let mut admin = pg.client();
    // Several rounds on fresh databases: each a race of four first starts.
    for round in 0..5 {
        let db = format!("race{round}");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let url = pg.url().replace("dbname=postgres", &format!("dbname={db}"));
        let barrier = Arc::new(Barrier::new(4));
        let starters: Vec<_> = (0..4)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let config = harbor_store_postgres::StoreConfig::new(url.clone(), format!("r{i}"))
                    .retention(None);
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(config)
                })
            })
            .collect();
        let stores: Vec<Store> = starters
            .into_iter()
            .map(|t| t.join().unwrap().expect("every replica opens"))
            .collect();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        assert_eq!(migrations(&mut client).len(), SCHEMA_VERSION as usize);
        let replicas: i64 = client
            .query_one("SELECT count(*) FROM harbor_replicas", &[])
            .unwrap()
            .get(0);
        assert_eq!(replicas, 4);
        drop(stores);
    }
}
