package credtype

import (
	"strings"
	"testing"
)

// TestGitHubAppRules: each github_app field refuses what GitHub would not take,
// naming the field, never echoing a key.
func TestGitHubAppRules(t *testing.T) {
	t.Parallel()
	p := pki()
	typ := mustType(t, "github_app")
	if v, err := typ.Validate(goodValues(t, "github_app")); err != nil || v.Values["base_url"] != DefaultGitHubAPI {
		t.Fatalf("example: %v, base_url %v", err, v.Values["base_url"])
	}
	for _, c := range []struct {
		field string
		value any
	}{
		{"private_key", p.ecSEC1},
		{"private_key", p.edPKCS8},
		{"private_key", p.rsaLegacyEncrypted},
		{"private_key", p.rsaPKCS8Encrypted},
		{"private_key", "not a key"},
		{"app_id", "12ab"},
		{"app_id", "0"},
		{"installation_id", "-5"},
		{"owner", "-octo"},
		{"owner", "octo--org"},
		{"owner", "octo_org"},
		{"owner", strings.Repeat("a", 40)},
		{"repositories", []string{"a/b"}},
		{"repositories", []string{".."}},
		{"repositories", []string{strings.Repeat("r", 101)}},
		{"permissions", map[string]any{"contents": "all"}},
		{"permissions", map[string]any{"Contents": "read"}},
		{"base_url", "http://github.example.com/api/v3"},
	} {
		v := goodValues(t, "github_app")
		v[c.field] = c.value
		_, err := typ.Validate(v)
		fe, ok := fieldErrorFor(err, c.field)
		if !ok {
			t.Errorf("%s=%v: %v, want a refusal naming %s", c.field, c.value, err, c.field)
			continue
		}
		if s, ok := c.value.(string); ok && len(s) > 40 && strings.Contains(fe.Error(), s[30:40]) {
			t.Errorf("%s: the refusal quotes the key: %v", c.field, fe)
		}
	}
	// A PKCS#8 key, GHES base_url, an owner instead of an installation and the
	// largest list GitHub takes are accepted; the key is kept as written.
	repos := make([]string, MaxGitHubRepositories)
	for i := range repos {
		repos[i] = "repo-" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + "-" + itoa(i)
	}
	v := map[string]any{"app_id": "42", "private_key": p.rsaPKCS8, "owner": "octo-org", "repositories": repos,
		"permissions": map[string]any{"contents": "write", "organization_administration": "admin"}, "base_url": "https://ghe.example.com/api/v3"}
	got, err := typ.Validate(v)
	if err != nil || got.Values["private_key"] != strings.TrimSpace(p.rsaPKCS8) || len(got.Values["repositories"].([]string)) != MaxGitHubRepositories {
		t.Fatalf("PKCS#8, GHES, 500 repositories: %v", err)
	}
	v["repositories"] = append(repos, "one-more")
	if _, err := typ.Validate(v); err == nil {
		t.Fatal("501 repositories accepted")
	}
	if k, err := GitHubAppKey(p.rsaPKCS1); err != nil || k.N.Cmp(p.rsaKey.N) != 0 {
		t.Fatalf("GitHubAppKey: %v", err)
	}
}

func itoa(i int) string {
	s := ""
	for {
		s = string(rune('0'+i%10)) + s
		if i /= 10; i == 0 {
			return s
		}
	}
}
