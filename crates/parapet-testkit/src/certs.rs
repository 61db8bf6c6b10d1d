//! Test certificates made with the `openssl` command: a CA of the test's own and the server
//! and client certificates it signs. Files live in a temporary directory removed on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A certificate authority made for one test, with the files it issued.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it: apt-get install openssl")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA (P-256 key, valid two days) named `name`, in a fresh temporary directory.
    pub fn new(name: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "parapet-certs-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir for certificates");
        let ca = Self {
            dir,
            name: name.to_owned(),
        };
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        openssl(
            &ca.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                &format!("/CN=parapet test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        ca
    }

    /// The CA certificate (PEM): what `sslrootcert` names.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// Issues a server certificate for `names` (`DNS:localhost`, `IP:127.0.0.1`, ...) and
    /// returns its certificate and key files (PEM).
    pub fn issue_server(&self, file_stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue(
            file_stem,
            &format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
    }

    /// Issues a client certificate (mutual TLS) and returns its certificate and key files (PEM).
    pub fn issue_client(&self, file_stem: &str) -> (PathBuf, PathBuf) {
        self.issue(
            file_stem,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
    }

    /// A P-256 key and a certificate for it with these X.509v3 `extensions`, signed by the CA.
    fn issue(&self, file_stem: &str, extensions: &str) -> (PathBuf, PathBuf) {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
        let (key, csr, crt, ext) = (
            format!("{file_stem}.key"),
            format!("{file_stem}.csr"),
            format!("{file_stem}.crt"),
            format!("{file_stem}.ext"),
        );
        std::fs::write(self.dir.join(&ext), extensions).expect("write extensions");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={file_stem}"),
            ],
        );
        let (ca_crt, ca_key) = (format!("{}.crt", self.name), format!("{}.key", self.name));
        let serial = SERIAL
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial,
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        (self.dir.join(crt), self.dir.join(key))
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
