//! Images and their manifests as an operator handles them: listed, shown, signed here with
//! `firmware.signing_key_file`, or given a manifest signed elsewhere (`rocky sign` in the CI that
//! builds the firmware) once Rocky verified it.

use super::{Service, ServiceError};
use crate::audit::Action;
use crate::firmware::{FirmwareImage, FirmwareList, Image, SignError};
use crate::protocol::{Manifest, Sha256, sha256_hex};

impl Service {
    /// The images Rocky can name by hash, with their manifests.
    pub async fn firmware_list(&self) -> Result<FirmwareList, ServiceError> {
        let library = self.library().clone();
        let known = tokio::task::spawn_blocking(move || library.known(FirmwareList::MAX))
            .await
            .map_err(|_| ServiceError::Internal("listing the images stopped".into()))?;
        let manifests = self.library().manifests();
        let images = known
            .into_iter()
            .map(|info| {
                let sha = crate::firmware::parse_sha256(&info.sha256).ok();
                let manifest = sha.and_then(|sha| manifests.get(&sha));
                let aws_signature = sha.and_then(|sha| manifests.attached_aws(&sha));
                let (name, size, sha256) = (info.name.to_string(), info.size, info.sha256.to_string());
                FirmwareImage { name, path: None, size, sha256, manifest, aws_signature }
            })
            .collect();
        Ok(FirmwareList { images })
    }

    /// The image with this hash and its manifest.
    pub async fn firmware_image(&self, sha256: &Sha256) -> Result<FirmwareImage, ServiceError> {
        let image = self.find_image(sha256).await?;
        Ok(self.describe_image(&image, None))
    }

    /// What `image` is, with its manifest; `path` for an upload.
    pub fn describe_image(&self, image: &Image, path: Option<String>) -> FirmwareImage {
        FirmwareImage {
            name: image.name().to_owned(),
            path,
            size: image.size(),
            sha256: sha256_hex(image.sha256()),
            manifest: self.library().manifests().get(image.sha256()),
            aws_signature: self.library().manifests().attached_aws(image.sha256()),
        }
    }

    /// Attaches a `sig-sha256-ecdsa` made elsewhere (`rocky sign --format aws`) to the image it
    /// is for, once a trusted ES256 key verified it: jobs for devices that run AWS's OTA agent
    /// send it instead of one Rocky makes.
    pub async fn attach_aws_signature(
        &self,
        sha256: &Sha256,
        signature: &str,
    ) -> Result<FirmwareImage, ServiceError> {
        let result = async {
            let image = self.find_image(sha256).await?;
            self.library()
                .manifests()
                .attach_aws(&image, signature)
                .map_err(|e| ServiceError::Invalid(format!("sig-sha256-ecdsa refused: {e}")))?;
            Ok(self.describe_image(&image, None))
        }
        .await;
        self.audited(Action::FirmwareAwsSignature, result, |_| format!("firmware:{}", sha256_hex(sha256)))
            .await
    }

    /// Attaches a manifest signed elsewhere to the image it is for, once it verified against the
    /// trusted keys and the image's hash and size. One with a lower security counter than the
    /// image's present manifest is refused unless `replace` (a device that installed the higher
    /// one refuses it anyway; one that did not would lose its anti-rollback floor).
    pub async fn attach_manifest(
        &self,
        sha256: &Sha256,
        cose: &[u8],
        replace: bool,
    ) -> Result<FirmwareImage, ServiceError> {
        let result = self.attach_manifest_unaudited(sha256, cose, replace).await;
        self.audited(Action::FirmwareManifest, result, |_| format!("firmware:{}", sha256_hex(sha256))).await
    }

    async fn attach_manifest_unaudited(
        &self,
        sha256: &Sha256,
        cose: &[u8],
        replace: bool,
    ) -> Result<FirmwareImage, ServiceError> {
        let image = self.find_image(sha256).await?;
        let manifest =
            Manifest::decode(cose).map_err(|e| ServiceError::Invalid(format!("manifest refused: {e}")))?;
        self.keeps_counter(&image, manifest.payload().seq, replace)?;
        self.library()
            .manifests()
            .attach(&image, cose)
            .map_err(|e| ServiceError::Invalid(format!("manifest refused: {e}")))?;
        Ok(self.describe_image(&image, None))
    }

    /// Takes an image just uploaded to `path` (in the firmware directory, as `file_name`):
    /// remembered there and held by hash, signed with Rocky's key when `signing` says so
    /// (version, counter, replace a higher counter), and described.
    pub async fn keep_upload(
        &self,
        image: Image,
        path: std::path::PathBuf,
        file_name: String,
        signing: Option<(Option<String>, u64, bool)>,
    ) -> Result<FirmwareImage, ServiceError> {
        let target = format!("firmware:{}", sha256_hex(image.sha256()));
        self.library().remember_file(&image, path);
        let image = self.library().intern(image);
        // Kept already: a refusal to sign says the image stays, unsigned.
        let result = match signing {
            Some((version, seq, replace)) => {
                self.sign_image(&image, version, seq, replace).map(|_| ()).map_err(|e| match e {
                    ServiceError::Conflict(why) => {
                        ServiceError::Conflict(format!("the image was kept, not signed: {why}"))
                    }
                    ServiceError::Invalid(why) => {
                        ServiceError::Invalid(format!("the image was kept, not signed: {why}"))
                    }
                    other => other,
                })
            }
            None => Ok(()),
        };
        let result = result.map(|()| self.describe_image(&image, Some(file_name)));
        self.audited(Action::FirmwareUpload, result, |_| target).await
    }

    /// Signs `image` with Rocky's key (`firmware.signing_key_file`), under the same rule.
    pub fn sign_image(
        &self,
        image: &Image,
        version: Option<String>,
        seq: u64,
        replace: bool,
    ) -> Result<Manifest, ServiceError> {
        self.keeps_counter(image, seq, replace)?;
        self.library().manifests().sign(image, version, seq).map_err(|e| match e {
            SignError::Io(reason) => {
                ServiceError::Internal(format!("the manifest could not be kept: {reason}"))
            }
            other => ServiceError::Invalid(other.to_string()),
        })
    }

    fn keeps_counter(&self, image: &Image, seq: u64, replace: bool) -> Result<(), ServiceError> {
        match self.library().manifests().get(image.sha256()) {
            Some(present) if !replace && present.payload().seq > seq => Err(ServiceError::Conflict(format!(
                "image {} has a manifest with security counter {} (key {}); this one is {}: add ?replace=true \
                 to replace it",
                image.name(),
                present.payload().seq,
                present.kid(),
                seq
            ))),
            _ => Ok(()),
        }
    }

    async fn find_image(&self, sha256: &Sha256) -> Result<Image, ServiceError> {
        self.library()
            .find(sha256)
            .await
            .map_err(ServiceError::Internal)?
            .ok_or_else(|| ServiceError::NotFound(format!("no image {} is held", sha256_hex(sha256))))
    }
}
