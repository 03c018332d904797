package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// Fuzz targets for request decoding: raw JSON bodies go through the framework's
// HandleRequest on an in-memory backend, as Vault's HTTP layer hands them over
// (json.Number for numbers). Each asserts that nothing panics, that the answer is a
// success or a 4xx (never an internal error), that a refusal changed nothing in
// storage, and that no secret of the input appears in the answer. `go test` runs the
// seeds; scripts/test.sh fuzzes each target for a few seconds.

// minSecretLen is the shortest secret searched for in answers: shorter values occur in
// rule text by chance ("pw" in "password").
const minSecretLen = 12

// decodeBody decodes body as Vault's HTTP layer does, or reports false.
func decodeBody(body []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw map[string]any
	if dec.Decode(&raw) != nil || raw == nil {
		return nil, false
	}
	return raw, true
}

// inputSecrets returns the strings held by fields that are sensitive in typ, or in any
// type when typ is nil (at any depth, for values of the wrong shape), minus those that
// also occur in non-secret parts of the request, which an answer may legitimately echo.
func inputSecrets(typ *credtype.Type, raw map[string]any, extra ...string) []string {
	var secrets, public []string
	var walk func(v any, into *[]string)
	walk = func(v any, into *[]string) {
		switch v := v.(type) {
		case string:
			*into = append(*into, v)
		case json.Number:
			*into = append(*into, v.String())
		case []any:
			for _, e := range v {
				walk(e, into)
			}
		case map[string]any:
			for k, e := range v {
				*into = append(*into, k)
				walk(e, into)
			}
		}
	}
	public = append(public, extra...)
	public = append(public, catalogText...)
	for k, v := range raw {
		public = append(public, k)
		f, ok := credtype.SchemaField(k)
		if typ != nil {
			f, ok = typ.Field(k)
		}
		if ok && f.Sensitive {
			walk(v, &secrets)
		} else {
			walk(v, &public)
		}
	}
	var out []string
	for _, s := range secrets {
		if len(s) < minSecretLen {
			continue
		}
		echoed := false
		for _, p := range public {
			if strings.Contains(p, s) {
				echoed = true
				break
			}
		}
		if !echoed {
			out = append(out, s)
		}
	}
	return out
}

// engineText reports whether v is text the engine itself puts in a management view
// (a type or field name, a rule, a status): a secret equal to it proves nothing there.
func engineText(v string) bool {
	for _, t := range catalogText {
		if strings.Contains(t, v) {
			return true
		}
	}
	switch v {
	case "awaiting_usage", "needs_reauth", "suspended", "inactivity":
		return true
	}
	return false
}

// catalogText is every name, rule and description of the catalog: an answer quotes
// them, so a "secret" that is part of one proves nothing when found.
var catalogText = func() []string {
	var out []string
	for _, t := range credtype.All() {
		out = append(out, t.Name, t.Description)
		out = append(out, t.Aliases...)
		for _, f := range t.Fields {
			out = append(out, f.Name, f.Rule, f.Description)
		}
	}
	return out
}()

// fuzzRequest sends one request and checks the properties every write must keep.
// A refusal's text is searched for every value a sensitive field of any type holds. A
// success answers with the credential's management view, which also holds values
// stored by earlier inputs: it must hold no sensitive field of the credential's type,
// and no value equal to one of the stored secrets.
func fuzzRequest(t *testing.T, b *integrationsBackend, s logical.Storage, op logical.Operation, path string, raw map[string]any, extra ...string) {
	t.Helper()
	before := credStorageSnapshot(t, s)
	extra = append(extra, storedCredentialNames(t, s)...)
	req := &logical.Request{Operation: op, Path: path, Data: maps.Clone(raw), Storage: s}
	resp, err := b.HandleRequest(context.Background(), req)
	code, _ := logical.RespondErrorCommon(req, resp, err)
	if code != 0 {
		logical.AdjustErrorStatusCode(&code, err)
	}
	var text string
	secrets := inputSecrets(nil, raw, extra...)
	switch {
	case code == 0 || code == http.StatusNoContent:
		if resp != nil {
			checkManagementView(t, b, s, resp.Data)
		}
		return
	case code >= 400 && code < 500:
		text = fmt.Sprint(err)
		if resp != nil {
			text += credJSON(t, resp)
		}
		if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
			t.Fatalf("%s %s refused (%d) but storage changed: %s", op, path, code, text)
		}
	default:
		t.Fatalf("%s %s: status %d: %v %v", op, path, code, err, resp)
	}
	for _, secret := range secrets {
		if strings.Contains(text, secret) {
			t.Fatalf("%s %s (status %d): answer contains the input secret %q: %s", op, path, code, secret, text)
		}
	}
}

// checkManagementView asserts a credential's management view shows none of its
// stored secrets.
func checkManagementView(t *testing.T, b *integrationsBackend, s logical.Storage, data map[string]any) {
	t.Helper()
	name, _ := data["name"].(string)
	typ, ok := credtype.Lookup(fmt.Sprint(data["type"]))
	if name == "" || !ok {
		return
	}
	c, err := b.credentials.get(context.Background(), s, name)
	if err != nil || c == nil {
		t.Fatalf("written credential %q not found: %v", name, err)
	}
	// What the caller wrote into public fields is public, even when it equals a
	// secret (a description that repeats the token is the caller's choice).
	public := map[string]bool{c.Description: true, c.Name: true}
	for _, l := range [][]string{c.Tags, c.UsedBy} {
		for _, v := range l {
			public[v] = true
		}
	}
	for _, f := range typ.Fields {
		if v := c.Values.Str(f.Name); v != "" && !f.Sensitive {
			public[v] = true
		}
	}
	secrets := map[string]bool{}
	for _, f := range typ.Fields {
		// Short values occur in the view by chance (a key "key" is also the name in
		// secret_fields), as in inputSecrets.
		if v := c.Values.Str(f.Name); v != "" && f.Sensitive && len(v) >= minSecretLen && !public[v] && !engineText(v) {
			secrets[v] = true
		}
		if _, shown := data[f.Name]; shown && f.Sensitive {
			t.Fatalf("management view shows sensitive field %q", f.Name)
		}
	}
	for _, v := range c.Secrets {
		if len(v) >= minSecretLen && !public[v] && !engineText(v) {
			secrets[v] = true
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if secrets[v] {
				t.Fatalf("management view of %s shows a stored secret", name)
			}
		case []string:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(data)
}

// FuzzCredentialWrite fuzzes create, update and patch of credentials/<name>.
func FuzzCredentialWrite(f *testing.F) {
	for i, typ := range credtype.All() {
		v := credWithType(typ.Name, exampleValues(f, typ.Name, "FUZZSEEDSECRETMARK"))
		v["tags"], v["description"] = "a,b", "seed"
		f.Add(uint8(i), "seed-"+typ.Name, credJSON(f, v))
	}
	for _, s := range []string{
		`{"type":"basic","username":"u","password":["FUZZSECRETINLIST1"]}`,
		`{"type":"basic","username":"u","password":{"k":"FUZZSECRETINMAP22"}}`,
		`{"type":"basic","username":"u","password":"FUZZSECRETWITHCTRL\u0000"}`,
		`{"type":"webhook","url":"https://hooks.example.com/FUZZSECRETURLPATH","suspend_after":"1s"}`,
		`{"type":"oauth2_client_credentials","token_url":"http://example.com/t","client_id":"c","client_secret":"FUZZSECRETCLIENTS"}`,
		`{"type":"certificate","certificate":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n","private_key":"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n","private_key_password":"FUZZSECRETKEYPASS"}`,
		`{"type":"basic","username":"u","password":"p","tags":[1,2,{"x":null}],"used_by":"a,,b","expires_at":12,"purge_after":-1}`,
		`{"type":"m365","tenant":"..","client_id":"x","client_secret":"FUZZSECRETM365XX","scopes":["a b","a"]}`,
	} {
		f.Add(uint8(0), "x", s)
		f.Add(uint8(2), "x", s)
	}
	b, s, _ := newBackendWith(f, backendOptions{})
	ops := []logical.Operation{logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation}
	f.Fuzz(func(t *testing.T, op uint8, name, body string) {
		raw, ok := decodeBody([]byte(body))
		if !ok || strings.Contains(name, "/") || name == "" {
			return
		}
		fuzzRequest(t, b, s, ops[int(op)%len(ops)], "credentials/"+name, raw, name)
		// Keep the store small: successful writes accumulate across inputs.
		if names := storedCredentialNames(t, s); len(names) > 32 {
			for _, n := range names {
				mustOK(t, b, s, logical.DeleteOperation, "credentials/"+n, nil)
			}
		}
	})
}

// FuzzConfigWrite fuzzes updates of config.
func FuzzConfigWrite(f *testing.F) {
	for _, s := range []string{
		`{"suspend_after":"30d","purge_after":"60d","warn_before":"14d,1d"}`,
		`{"log_size":10,"expiry_buffer":30,"request_timeout":"10s","usage_flush_interval":5}`,
		`{"callback_base_url":"https://vault.example.com:8200","default_token_lifetime":"1h"}`,
		`{"notify_credential":"slack1","notify_channel":"#ops"}`,
		`{"suspend_after":-5}`,
		`{"purge_after":"20d","suspend_after":"30d"}`,
		`{"warn_before":[1,"x",{"a":1}],"log_size":"many"}`,
		`{"callback_base_url":"javascript:alert(1)","unknown":true}`,
		`{"log_size":1e309}`,
	} {
		f.Add(s)
	}
	b, s, _ := newBackendWith(f, backendOptions{})
	f.Fuzz(func(t *testing.T, body string) {
		raw, ok := decodeBody([]byte(body))
		if !ok {
			return
		}
		fuzzRequest(t, b, s, logical.UpdateOperation, "config", raw)
	})
}
