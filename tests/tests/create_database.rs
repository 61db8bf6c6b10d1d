//! `create_database_if_missing` creates once, then finds the database, also under a race.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parapet_tests::{admin_url, connect, with_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_once_then_finds_it_even_when_racing() {
    let name = format!("parapet_t_create_{}", std::process::id());
    let url = with_database(&admin_url(), &name);
    let config: parapet_postgres::PgConfig = url.parse().unwrap();
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await
        .unwrap();

    // Four starts at once: exactly one creates it, none fails.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { parapet_migrate::create_database_if_missing(&config).await })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        if racer.await.unwrap().expect("no racer fails") {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert!(
        !parapet_migrate::create_database_if_missing(&config)
            .await
            .unwrap()
    );
    let client = connect(&url).await;
    let current: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, name);
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
