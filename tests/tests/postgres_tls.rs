//! TLS to PostgreSQL (feature `tls`): the test makes its own CA and a server certificate
//! signed by it (with the `openssl` command), points the local server at them
//! (`ALTER SYSTEM` + `pg_reload_conf()`), and restores the server's settings at the end.
//! When the server cannot be reconfigured (not a superuser, not on this machine, no
//! `openssl`), the test says why and passes without testing.
//!
//! What it proves, on the server's own view of each connection (`pg_stat_ssl`):
//! - `PostgresTls::root_certificates_pem` connects over TLS to a server whose certificate
//!   chains to the CA given and names the host, and every connection the store opens
//!   (the pool's, a projection runner's, a subscription's) is encrypted: a path that
//!   forgot the TLS connector would fail, as the options make TLS required;
//! - a certificate from another CA, or for another host name, is refused;
//! - `sslmode=require` in the connection string encrypts without checking the certificate
//!   (libpq's meaning), and `sslmode=disable` with `PostgresOptions::tls` is a typed
//!   error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use eventsource::{
    Context, EventStore, ExpectedVersion, HandlerResult, NewEvent, Position, PostgresOptions,
    PostgresStore, PostgresTls, Project, Projection, ProjectionStore, Projector, StoreError,
    StreamId, Subscription,
};
use eventsource_tests::MoneyDeposited;
use eventsource_tests::pg::{self, TestSchema};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA (`{name}.crt`, `{name}.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=eventsource test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    )
}

/// `server.crt` and `server.key` in `dir`, signed by the CA `ca`, for the host name
/// `localhost` only (not for 127.0.0.1).
fn make_server_certificate(dir: &Path, ca: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n")
        .map_err(|e| format!("cannot write san.ext: {e}"))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    )
}

/// The server's certificate settings, pointed at `dir`'s files until dropped; holds an
/// advisory lock so that two runs of this test never reconfigure the server at once.
struct ServerCertificate {
    url: String,
    lock: postgres::Client,
}

impl ServerCertificate {
    fn install(url: &str, dir: &Path) -> Result<Self, String> {
        let mut lock = postgres::Client::connect(url, postgres::NoTls)
            .map_err(|e| format!("cannot connect: {e}"))?;
        lock.batch_execute("SELECT pg_advisory_lock(4553524, 7)")
            .map_err(|e| format!("cannot take the test's lock: {e}"))?;
        let superuser = pg::sql(url, &["SHOW is_superuser"])?;
        if superuser.trim() != "on" {
            return Err("the test user is not a superuser".to_owned());
        }
        let data_dir = pg::sql(url, &["SHOW data_directory"])?;
        if !Path::new(data_dir.trim()).exists() {
            return Err(format!(
                "the server's data directory {} is not on this machine",
                data_dir.trim()
            ));
        }
        // The server reads the key as its own user: it must own it, mode 0600.
        let key = dir.join("server.key");
        let owner = Command::new("stat")
            .args(["-c", "%U", data_dir.trim()])
            .output()
            .map_err(|e| format!("cannot run stat: {e}"))?;
        let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
        let chown = Command::new("chown")
            .arg(&owner)
            .arg(&key)
            .status()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !chown.success() {
            return Err(format!("cannot give the key to the server's user {owner}"));
        }
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod the key: {e}"))?;
        let cert = dir.join("server.crt").display().to_string();
        let key = key.display().to_string();
        pg::sql(
            url,
            &[
                &format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"),
                &format!("ALTER SYSTEM SET ssl_key_file = '{key}'"),
                "ALTER SYSTEM SET ssl = on",
                "SELECT pg_reload_conf()",
            ],
        )?;
        let installed = ServerCertificate {
            url: url.to_owned(),
            lock,
        };
        // The reload is asynchronous: wait until new sessions see the settings.
        for _ in 0..50 {
            if pg::sql(url, &["SHOW ssl_cert_file"])?.trim() == cert {
                return Ok(installed);
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err("the server did not reload its settings within 5 s".to_owned())
    }
}

impl Drop for ServerCertificate {
    fn drop(&mut self) {
        let restored = pg::sql(
            &self.url,
            &[
                "ALTER SYSTEM RESET ssl_cert_file",
                "ALTER SYSTEM RESET ssl_key_file",
                "ALTER SYSTEM RESET ssl",
                "SELECT pg_reload_conf()",
            ],
        );
        if let Err(e) = restored {
            eprintln!("could not restore the server's TLS settings: {e}");
        }
        let _ = self
            .lock
            .batch_execute("SELECT pg_advisory_unlock(4553524, 7)");
    }
}

/// The server's view of the connections named `application`: (encrypted, plain).
fn connections(url: &str, application: &str) -> Result<(usize, usize), String> {
    let counts = pg::sql(
        url,
        &[&format!(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = '{application}'"
        )],
    )?;
    let mut parts = counts.trim().split('|').map(str::parse::<usize>);
    match (parts.next(), parts.next()) {
        (Some(Ok(tls)), Some(Ok(plain))) => Ok((tls, plain)),
        _ => Err(format!("unexpected counts: {counts}")),
    }
}

/// A projection that runs a statement in its batch's transaction for each deposit.
#[derive(Projection)]
#[projection(name = "tls_deposits", events(MoneyDeposited))]
struct Deposits;

impl Project<MoneyDeposited> for Deposits {
    fn project(&mut self, _: &MoneyDeposited, ctx: &mut Context<'_>) -> HandlerResult {
        ctx.postgres()?.execute("SELECT 1", &[])?;
        Ok(())
    }
}

/// The test's connection string with `host=localhost` for `host=127.0.0.1`, when it has
/// that form.
fn localhost_url(url: &str) -> Option<String> {
    url.contains("host=127.0.0.1")
        .then(|| url.replace("host=127.0.0.1", "host=localhost"))
}

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    _server: ServerCertificate,
}

fn setup(url: &str) -> Result<Setup, String> {
    let dir = tempfile::Builder::new()
        .prefix("eventsource-tls-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory: {e}"))?;
    let path = dir.path().to_path_buf();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    make_ca(&path, "ca")?;
    make_ca(&path, "other-ca")?;
    make_server_certificate(&path, "ca")?;
    let server = ServerCertificate::install(url, &path)?;
    Ok(Setup {
        _dir: dir,
        path,
        _server: server,
    })
}

#[test]
fn tls_connections_are_encrypted_and_verified() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let Some(local) = localhost_url(&url) else {
        eprintln!("skipped: the test needs a connection string with host=127.0.0.1, not {url}");
        return Ok(());
    };
    let setup = match setup(&url) {
        Ok(setup) => setup,
        Err(why) => {
            let note =
                format!("\nnote: TLS test skipped: the server cannot be reconfigured: {why}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
            return Ok(());
        }
    };
    let ca = fs::read(setup.path.join("ca.crt"))?;
    let other_ca = fs::read(setup.path.join("other-ca.crt"))?;
    let schema = TestSchema::new(&url);

    // Verified: the certificate chains to the CA and names the host.
    let application = format!("{}_verified", schema.name);
    let store = PostgresStore::connect_with(
        &format!("{local} application_name={application}"),
        PostgresOptions::new()
            .schema(schema.name.clone())
            .tls(PostgresTls::root_certificates_pem(&ca)?),
    )?;
    let stream = StreamId::new("account", "acc-1");
    store.append(
        &stream,
        ExpectedVersion::NoStream,
        &[NewEvent::new("money.deposited", 1, r#"{"amount":5}"#)],
    )?;
    assert_eq!(store.read_all(Position::START).count(), 1);
    // A projection runner and a subscription open connections of their own.
    let report = Projector::new(&store, Deposits).run_until_caught_up()?;
    assert_eq!(report.applied, 1);
    let mut subscription = Subscription::new(&store, Position::START);
    let first = subscription
        .next_timeout(Duration::from_secs(10))?
        .ok_or("the subscription saw nothing")?;
    assert_eq!(first.stream, stream);
    let (tls, plain) = connections(&url, &application)?;
    assert!(tls >= 1, "no encrypted connection of the store");
    assert_eq!(plain, 0, "the store made a connection in plain text");
    assert_eq!(store.checkpoints()?.len(), 1);
    drop(subscription);
    drop(store);

    // Another CA: the handshake fails, and says why.
    let refused = PostgresStore::connect_with(
        &local,
        PostgresOptions::new()
            .schema(schema.name.clone())
            .tls(PostgresTls::root_certificates_pem(&other_ca)?),
    )
    .expect_err("a certificate from another CA was accepted");
    assert!(
        matches!(refused, StoreError::Postgres(_)),
        "unexpected error: {refused:?}"
    );
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "the error does not say the issuer is unknown: {refused:?}"
    );

    // The right CA, the wrong name: the certificate is for localhost, not 127.0.0.1.
    let refused = PostgresStore::connect_with(
        &url,
        PostgresOptions::new()
            .schema(schema.name.clone())
            .tls(PostgresTls::root_certificates_pem(&ca)?),
    )
    .expect_err("a certificate for another host name was accepted");
    assert!(
        format!("{refused:?}").contains("NotValidForName"),
        "the error does not say the name does not match: {refused:?}"
    );

    // sslmode=require without options: encrypted, the certificate not checked.
    let application = format!("{}_require", schema.name);
    let store = PostgresStore::connect_with(
        &format!("{url} sslmode=require application_name={application}"),
        PostgresOptions::new().schema(schema.name.clone()),
    )?;
    assert_eq!(store.stream_version(&stream)?.get(), 1);
    assert_eq!(connections(&url, &application)?, (1, 0));
    drop(store);

    // Without TLS options and without sslmode=require: plain text, as before.
    let application = format!("{}_plain", schema.name);
    let store = PostgresStore::connect_with(
        &format!("{url} application_name={application}"),
        PostgresOptions::new().schema(schema.name.clone()),
    )?;
    assert_eq!(store.stream_version(&stream)?.get(), 1);
    assert_eq!(connections(&url, &application)?, (0, 1));
    drop(store);

    // sslmode=disable with TLS options: a typed error before anything is connected.
    let conflict = PostgresStore::connect_with(
        &format!("{url} sslmode=disable"),
        PostgresOptions::new().tls(PostgresTls::unverified()?),
    )
    .expect_err("sslmode=disable with TLS options was accepted");
    assert!(
        matches!(&conflict, StoreError::Tls { message } if message.contains("sslmode=disable")),
        "unexpected error: {conflict:?}"
    );
    Ok(())
}

#[test]
fn bad_ca_certificates_are_typed_errors() {
    for (pem, says) in [
        (&b""[..], "no CA certificate"),
        (
            &b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"[..],
            "CA certificate 1",
        ),
    ] {
        match PostgresTls::root_certificates_pem(pem) {
            Err(StoreError::Tls { message }) => {
                assert!(message.contains(says), "{message:?} does not say {says:?}");
            }
            other => panic!("expected StoreError::Tls, got {other:?}"),
        }
    }
}
