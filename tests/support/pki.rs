//! A throwaway certificate authority made with the openssl CLI, for the tests of
//! the server's own TLS (tests/e2e/tls.rs) and of the outbound HTTPS the host does
//! for apps (tests/support/https.rs). Dropped, its files go.

use std::path::PathBuf;
use std::process::Command;

/// A throwaway CA and certificates it signed for 127.0.0.1, made with the openssl CLI.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.new_key_request(
            "ca.key",
            &[
                "-x509",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=wsgi-wasm test CA",
            ],
        );
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `openssl req` with a new unencrypted P-256 key written to `key_file`.
    fn new_key_request(&self, key_file: &str, rest: &[&str]) {
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key_file,
        ];
        args.extend_from_slice(rest);
        self.openssl(&args);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `NAME.pem` and `NAME.key`: a server certificate for 127.0.0.1 with subject
    /// CN=`NAME`, signed by the CA.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        self.new_key_request(&key, &["-out", &csr, "-subj", &format!("/CN={name}")]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        (self.path(&pem), self.path(&key))
    }

    pub fn ca(&self) -> String {
        self.path("ca.pem").to_str().unwrap().to_owned()
    }
}
