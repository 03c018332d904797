package release

import (
	"os"
	"strings"
	"testing"
)

// testOnly are modules only the tests use, which live in the e2e module's go.mod: an
// operator auditing the plugin's dependencies reads the plugin's go.mod, and none of
// these belongs there (see docs/ARCHITECTURE.md, Packages).
var testOnly = []string{
	"github.com/ory/fosite",            // e2e/internal/fositetest, bootstrap/devprovider
	"github.com/go-oauth2/oauth2",      // e2e/internal/oauthtest
	"github.com/zitadel/oidc",          // e2e/internal/zitadeltest
	"gonum.org/v1/plot",                // e2e's benchmark report
	"codeberg.org/go-fonts/liberation", // gonum/plot's fonts
}

// The plugin's go.mod and go.sum name no OAuth server library and no plotting
// library: a unit test that imports one fails here rather than growing the plugin's
// module graph again.
func TestPluginModuleNamesNoTestOnlyModule(t *testing.T) {
	for _, f := range []string{"../../go.mod", "../../go.sum"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range testOnly {
			if strings.Contains(string(b), m) {
				t.Errorf("%s names %s, which only the tests use: it belongs in e2e/go.mod", f[len("../../"):], m)
			}
		}
	}
}
