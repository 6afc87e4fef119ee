use lock_runtime::{LockClient, LockError, redis_locked};
use tests::RedisServer;

#[redis_locked(name = "smoke:{id}", ttl = 5, client = locks)]
async fn locked(locks: &LockClient, id: u64) -> Result<u64, LockError> {
    Ok(id * 2)
}

#[tokio::test]
async fn it_expands_and_runs() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    assert_eq!(locked(&locks, 21).await.unwrap(), 42);
}
