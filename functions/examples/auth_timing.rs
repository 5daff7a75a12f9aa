//! Times queue-api's token check for distinct users (every token new to the cache,
//! as at a drop's opening): `cargo run --release -p dropgate-functions --example
//! auth_timing`. 16.3 µs per token on the bench machine, of which the RSA
//! verification is about 14 µs.

use std::time::{Duration, Instant};

use dropgate_functions::auth::dev::{DevKeys, LOCAL_AUDIENCE, LOCAL_ISSUER, TokenSigner};
use dropgate_functions::auth::{Algorithm, AuthPolicy, Authenticator, KeySource, KeySourceArgs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("auth-timing-{}", std::process::id()));
    let keys = DevKeys::in_state_dir(&dir);
    keys.ensure()?;
    let signer = TokenSigner::local(&keys)?;
    let tokens: Vec<String> = (0..20_000)
        .map(|n| signer.sign("bench", &format!("user-{n:07}"), Duration::from_secs(3600)))
        .collect::<Result<_, _>>()?;
    for round in 0..3 {
        let auth = Authenticator::new(
            AuthPolicy {
                algorithms: vec![Algorithm::Rs256],
                issuer: LOCAL_ISSUER.into(),
                audience: LOCAL_AUDIENCE.into(),
                max_lifetime_s: 86_400,
            },
            KeySource::load(&KeySourceArgs::jwks_file(keys.jwks.clone())).await?,
            100_000,
        );
        let started = Instant::now();
        for token in &tokens {
            auth.authenticate(Some(&format!("Bearer {token}"))).await?;
        }
        println!(
            "round {round}: {:.2} µs per distinct token",
            started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64
        );
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
