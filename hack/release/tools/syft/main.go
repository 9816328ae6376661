// syft (github.com/anchore/syft) as a library: the SBOM of one platform of an image in an OCI
// registry, made by syft's own image source (stereoscope), its Debian dpkg-database and
// installed-Python-package catalogers (what the Moonlander image holds: a Debian base and a
// Python virtualenv) and its SPDX JSON encoder. syft's full CLI links every cataloger it has
// (Go, Java, Rust, .NET, AI models, SQLite RPM databases, ...; about 1,700 packages): this
// main keeps the build to the two catalogers that find something in this image.
//
//	syft registry:HOST/REPO@DIGEST [--platform linux/amd64] [-o spdx-json=FILE]
//
// SYFT_REGISTRY_CA_CERT names a CA file for the registry's TLS, as syft's own configuration
// (registry.ca-cert) does. Built by ../build.sh; used by hack/release/release.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/stereoscope/pkg/image/oci"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/linux"
	"github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/pkg/cataloger/debian"
	"github.com/anchore/syft/syft/pkg/cataloger/python"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/stereoscopesource"
)

// version is the syft module version this is built from (set by ../build.sh's targets).
var version = "unknown"

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "syft:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("syft", flag.ContinueOnError)
	platform := fs.String("platform", "linux/amd64", "the platform to scan in an image index")
	output := fs.String("o", "spdx-json", "spdx-json or spdx-json=FILE")
	if len(args) == 1 && args[0] == "version" {
		fmt.Println("syft", version, "(dpkg-db and python-installed catalogers, SPDX JSON)")
		return nil
	}
	// The source comes first, as in `syft scan SOURCE -o ...`.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: syft registry:HOST/REPO@DIGEST [--platform OS/ARCH] [-o spdx-json[=FILE]]")
	}
	input := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ref, ok := strings.CutPrefix(input, "registry:")
	if !ok {
		return fmt.Errorf("source %q: only registry:REFERENCE is supported", input)
	}
	format, path, _ := strings.Cut(*output, "=")
	if format != "spdx-json" {
		return fmt.Errorf("output %q: only spdx-json is supported", format)
	}

	plat, err := image.NewPlatform(*platform)
	if err != nil {
		return err
	}
	tmp := file.NewTempDirGenerator("syft")
	defer func() { _ = tmp.Cleanup() }()
	opts := image.RegistryOptions{CAFileOrDir: os.Getenv("SYFT_REGISTRY_CA_CERT")}
	img, err := oci.NewRegistryProvider(tmp, opts, ref, plat).Provide(ctx)
	if err != nil {
		return err
	}
	src := stereoscopesource.New(img, stereoscopesource.ImageConfig{
		Reference: ref, Platform: plat, RegistryOptions: &opts,
	})
	defer func() { _ = src.Close() }()

	s, err := catalog(ctx, src)
	if err != nil {
		return err
	}
	enc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.DefaultEncoderConfig())
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := enc.Encode(w, s); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "syft: %d packages in %s (%s)\n", s.Artifacts.Packages.PackageCount(), ref, *platform)
	return nil
}

// catalog runs the catalogers over the squashed image, as `syft scan` does by default.
func catalog(ctx context.Context, src source.Source) (sbom.SBOM, error) {
	resolver, err := src.FileResolver(source.SquashedScope)
	if err != nil {
		return sbom.SBOM{}, err
	}
	packages := pkg.NewCollection()
	var rels []artifact.Relationship
	for _, c := range []pkg.Cataloger{debian.NewDBCataloger(), python.NewInstalledPackageCataloger()} {
		found, r, err := c.Catalog(ctx, resolver)
		if err != nil {
			return sbom.SBOM{}, fmt.Errorf("%s: %w", c.Name(), err)
		}
		for i := range found {
			if found[i].FoundBy == "" {
				found[i].FoundBy = c.Name()
			}
		}
		packages.Add(found...)
		rels = append(rels, r...)
	}
	return sbom.SBOM{
		Artifacts: sbom.Artifacts{
			Packages:          packages,
			LinuxDistribution: linux.IdentifyRelease(resolver),
		},
		Relationships: rels,
		Source:        src.Describe(),
		Descriptor:    sbom.Descriptor{Name: "syft", Version: version},
	}, nil
}
