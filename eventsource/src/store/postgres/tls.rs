//! How a PostgreSQL store's connections are made: in plain text, or over TLS (feature
//! `tls`, with rustls) as [`PostgresOptions::tls`](super::PostgresOptions::tls) and the
//! connection string's `sslmode` say.

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};

use crate::error::StoreError;

/// Makes every connection of one store: the pool's, the projection runners', the
/// listeners' and the lookups after a lost COMMIT answer.
#[derive(Clone)]
pub(super) enum Connector {
    /// No TLS: `sslmode=disable` or `prefer` (the default), without
    /// [`PostgresOptions::tls`](super::PostgresOptions::tls).
    Plain,
    /// TLS as the options' [`PostgresTls`] says.
    #[cfg(feature = "tls")]
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Connector {
    /// The connector for `config` and the options' TLS setting; `config`'s `sslmode`
    /// becomes `require` when TLS is configured, so a connection never falls back to
    /// plain text.
    #[cfg_attr(
        not(feature = "tls"),
        allow(clippy::unnecessary_wraps, reason = "fails only with feature `tls`")
    )]
    pub(super) fn new(config: &mut Config, tls: Option<&PostgresTls>) -> Result<Self, StoreError> {
        #[cfg(feature = "tls")]
        {
            let tls = match (config.get_ssl_mode(), tls) {
                (SslMode::Disable, Some(_)) => {
                    return Err(StoreError::Tls {
                        message: "the connection string says sslmode=disable, but the options \
                                  configure TLS (PostgresOptions::tls): remove one of them"
                            .to_owned(),
                    });
                }
                (_, Some(tls)) => tls.clone(),
                // libpq's `sslmode=require`: encrypted, the certificate not checked.
                (SslMode::Require, None) => PostgresTls::unverified()?,
                (_, None) => return Ok(Connector::Plain),
            };
            config.ssl_mode(SslMode::Require);
            Ok(Connector::Tls(
                tokio_postgres_rustls::MakeRustlsConnect::new((*tls.config).clone()),
            ))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _: Option<&PostgresTls> = tls;
            if config.get_ssl_mode() == SslMode::Require {
                return Err(StoreError::Tls {
                    message: "the connection string says sslmode=require, but eventsource was \
                              built without TLS: enable its feature `tls`"
                        .to_owned(),
                });
            }
            Ok(Connector::Plain)
        }
    }

    /// A new connection.
    pub(super) fn connect(&self, config: &Config) -> Result<Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(NoTls),
            #[cfg(feature = "tls")]
            Connector::Tls(tls) => config.connect(tls.clone()),
        }
    }
}

/// Without feature `tls` there is nothing to configure: the type exists so that
/// [`PostgresOptions`](super::PostgresOptions) is the same struct either way.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PostgresTls {}

#[cfg(feature = "tls")]
pub use self::rustls_tls::PostgresTls;

#[cfg(feature = "tls")]
mod rustls_tls {
    use std::fmt;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use crate::error::StoreError;

    /// TLS for a [`PostgresStore`](crate::PostgresStore)'s connections (feature `tls`;
    /// rustls with the *ring* provider, no system library needed).
    ///
    /// Given to [`PostgresOptions::tls`](crate::PostgresOptions::tls), it applies to
    /// every connection the store opens, and the connection is refused rather than made
    /// in plain text when the server does not offer TLS. Without it, a connection string
    /// with `sslmode=require` gets [`PostgresTls::unverified`], as libpq's
    /// `sslmode=require` does.
    ///
    /// | constructor | checks the server's certificate | libpq's equivalent |
    /// |---|---|---|
    /// | [`PostgresTls::root_certificates_pem`] | against the CAs given (e.g. your cloud provider's bundle), and its name against the host | `sslmode=verify-full sslrootcert=FILE` |
    /// | [`PostgresTls::system_roots`] | against the operating system's CAs, and its name | `sslmode=verify-full sslrootcert=system` |
    /// | [`PostgresTls::unverified`] | not at all: encrypted, but open to a man in the middle | `sslmode=require` |
    /// | [`PostgresTls::from_rustls`] | as your `rustls::ClientConfig` says (client certificates, pinning) | |
    ///
    /// ```
    /// use eventsource::{PostgresOptions, PostgresTls};
    ///
    /// let ca = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
    /// let refused = PostgresTls::root_certificates_pem(ca.as_bytes()).unwrap_err();
    /// assert!(refused.to_string().contains("certificate"));
    ///
    /// let options = PostgresOptions::new().tls(PostgresTls::unverified()?);
    /// assert!(options.get_tls().is_some());
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    #[derive(Clone)]
    pub struct PostgresTls {
        pub(in crate::store::postgres) config: Arc<ClientConfig>,
        checks: &'static str,
    }

    impl fmt::Debug for PostgresTls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PostgresTls")
                .field("checks", &self.checks)
                .finish_non_exhaustive()
        }
    }

    impl PartialEq for PostgresTls {
        /// The same configuration (clones of one `PostgresTls` are equal).
        fn eq(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.config, &other.config)
        }
    }

    impl Eq for PostgresTls {}

    /// *ring*'s provider: it builds with a C compiler alone (aws-lc-rs, which rustls
    /// now prefers for its post-quantum key exchange, needs more tooling to build).
    #[allow(
        deprecated,
        reason = "ring's provider lacks post-quantum key exchange, which PostgreSQL clients do not need yet"
    )]
    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn tls_error(message: impl Into<String>) -> StoreError {
        StoreError::Tls {
            message: message.into(),
        }
    }

    fn with_roots(roots: RootCertStore, checks: &'static str) -> Result<PostgresTls, StoreError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(PostgresTls {
            config: Arc::new(config),
            checks,
        })
    }

    impl PostgresTls {
        /// Checks the server's certificate against the CA certificates in `pem` (one or
        /// more `BEGIN CERTIFICATE` blocks, as in a `root.crt` or a cloud provider's
        /// bundle) and its name against the host connected to.
        ///
        /// ```
        /// use eventsource::PostgresTls;
        ///
        /// let err = PostgresTls::root_certificates_pem(b"").unwrap_err();
        /// assert!(err.to_string().contains("no CA certificate"));
        /// ```
        ///
        /// # Errors
        /// [`StoreError::Tls`] when `pem` holds no certificate, or one that cannot be
        /// parsed.
        pub fn root_certificates_pem(pem: &[u8]) -> Result<Self, StoreError> {
            let mut roots = RootCertStore::empty();
            for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
                let cert = cert
                    .map_err(|e| tls_error(format!("CA certificate {} of the PEM: {e}", i + 1)))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("CA certificate {} of the PEM: {e}", i + 1)))?;
            }
            if roots.is_empty() {
                return Err(tls_error("the PEM holds no CA certificate"));
            }
            with_roots(roots, "against the CAs given, and the host name")
        }

        /// Checks the server's certificate against the operating system's CA
        /// certificates (`/etc/ssl/certs` and the like; `SSL_CERT_FILE` and
        /// `SSL_CERT_DIR` are honoured) and its name against the host.
        ///
        /// ```no_run
        /// use eventsource::{PostgresOptions, PostgresStore, PostgresTls};
        ///
        /// let options = PostgresOptions::new().tls(PostgresTls::system_roots()?);
        /// let store = PostgresStore::connect_with("host=db.example.com user=app dbname=app", options)?;
        /// # Ok::<(), eventsource::StoreError>(())
        /// ```
        ///
        /// # Errors
        /// [`StoreError::Tls`] when the system has no CA certificate that rustls accepts.
        pub fn system_roots() -> Result<Self, StoreError> {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(String::new, |e| format!(": {e}"));
                return Err(tls_error(format!(
                    "no CA certificate found on this system{why}"
                )));
            }
            with_roots(roots, "against the system's CAs, and the host name")
        }

        /// Encrypts, but accepts any certificate the server shows (its signature over
        /// the handshake is still checked): libpq's `sslmode=require`. Anyone who can
        /// intercept the connection can read it; use it only on networks you trust.
        ///
        /// ```
        /// use eventsource::{PostgresOptions, PostgresTls};
        ///
        /// let options = PostgresOptions::new().tls(PostgresTls::unverified()?);
        /// # let _ = options;
        /// # Ok::<(), eventsource::StoreError>(())
        /// ```
        ///
        /// # Errors
        /// [`StoreError::Tls`] if rustls refuses the configuration (it does not, with
        /// the provider this crate builds in).
        pub fn unverified() -> Result<Self, StoreError> {
            let provider = provider();
            let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_error(format!("TLS setup: {e}")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            Ok(PostgresTls {
                config: Arc::new(config),
                checks: "nothing (encrypted, not authenticated)",
            })
        }

        /// A `rustls` configuration of your own: client certificates, pinned keys, other
        /// verifiers. Build it with the `rustls` this crate re-exports
        /// ([`eventsource::rustls`](crate::rustls)).
        ///
        /// ```
        /// use eventsource::rustls::{ClientConfig, RootCertStore};
        /// use eventsource::PostgresTls;
        ///
        /// let config = ClientConfig::builder()
        ///     .with_root_certificates(RootCertStore::empty())
        ///     .with_no_client_auth();
        /// let tls = PostgresTls::from_rustls(config);
        /// # let _ = tls;
        /// ```
        pub fn from_rustls(config: ClientConfig) -> Self {
            PostgresTls {
                config: Arc::new(config),
                checks: "as the rustls configuration given says",
            }
        }
    }

    /// The verifier of [`PostgresTls::unverified`].
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
