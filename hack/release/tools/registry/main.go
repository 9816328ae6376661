// The distribution registry (CNCF distribution v3, the code behind registry:3) as its own
// cmd/registry runs it, with the filesystem and inmemory storage drivers and htpasswd/token
// auth only: the cloud storage drivers (azure, gcs, s3) and the cloudfront middleware are left
// out to keep the build small. Run by tests/e2e/test_release.py as the release's target
// registry. Built by ../build.sh (CGO off, GOTOOLCHAIN=local).
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
