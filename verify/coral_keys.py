"""The signing keys of Coral's apt repository (packages.cloud.google.com/apt,
suite coral-edgetpu-stable), by fingerprint: the one list both sides read.

The controller accepts a key file only when it carries one of ``ACCEPTED`` (or of the
user's ``coralpi_coral_key_fingerprints``; ``provision.artifacts.keyring`` takes its default
from here) and records the fingerprints it accepted in the lock. A run hands them to the
host (the plan's ``artifacts.coral_key_fingerprints``, kept in the local fact), and verify
judges the host's signed-by keyring against those; only without a plan or a fact does it
fall back to ``ACCEPTED``. Stdlib only: this module runs on the Pi.
"""

from __future__ import annotations

#: Accepted by default: the 2021 "Rapture Automatic Signing Key"
#: A362B822...B53DC80D13EDEF05, which signs packages.cloud.google.com's repositories since
#: the 2021 rotation (its absence shows as NO_PUBKEY B53DC80D13EDEF05: kubernetes/release
#: #2862, GoogleCloudPlatform/gcsfuse #961). Checked 2026-12-02.
ACCEPTED: tuple[str, ...] = ("A362B822F6DEDC652817EA46B53DC80D13EDEF05",)

#: Keys the key file also carries that are not trusted for Coral, and why (named in
#: verify's findings and in the controller's refusals). Checked 2026-12-02 (issue 13).
NOT_TRUSTED: dict[str, str] = {
    # kubernetes/test-infra #7505 shows its expiry date; EXPKEYSIG 6A030B21BA07F4FB in
    # smartcontractkit/chainlink #4155.
    "54A647F9048D5688D7DA2ABE6A030B21BA07F4FB": (
        "the 2018 Google Cloud Packages Automatic Signing Key, expired 2021-03-31"
    ),
    # Mozilla publishes the same key for its own apt repository.
    "35BAA0B33E9EB396F59CA838C0BA5CE6DC6315A3": (
        "Google Artifact Registry's shared repository signer: it proves the host, not Coral"
    ),
}
