// cosign v2 (github.com/sigstore/cosign/v2), its own CLI (cli.New) as cmd/cosign runs it,
// without the blank imports of the KMS providers (aws, azure, gcp, hashivault): the release
// signs with a key pair from files (COSIGN_KEY), so the cloud SDKs are left out of the build.
// The deprecated single-dash flag rewriting of cmd/cosign is left out too. Used by
// hack/release/release.sh and tests/e2e/test_release.py. Built by ../build.sh.
package main

import (
	"errors"
	"log"
	"os"

	"github.com/sigstore/cosign/v2/cmd/cosign/cli"
	cosignerrors "github.com/sigstore/cosign/v2/cmd/cosign/errors"
)

func main() {
	if err := cli.New().Execute(); err != nil {
		var ce *cosignerrors.CosignError
		if errors.As(err, &ce) {
			log.Printf("error during command execution: %v", err)
			os.Exit(ce.ExitCode())
		}
		log.Fatalf("error during command execution: %v", err)
	}
}
