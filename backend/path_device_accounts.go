package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// deviceAccountType is the catalog type device-accounts/ and lookup/ serve and the
// device index holds: the one marked DeviceIndexed.
var deviceAccountType = credtype.DeviceAccountType().Name

// deviceAccountFields is the schema of device-accounts: identifier plus every field a
// device account takes.
func deviceAccountFields() map[string]*framework.FieldSchema {
	t := credtype.DeviceAccountType()
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name
	}
	fields := catalogSchema(names, false)
	fields["identifier"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Name of the device account to create or update. Without it, the account is found by hostname, ip and username, or created.",
	}
	return fields
}

// catalogSchema is the path schema of the named catalog fields, as query parameters
// when query is set (lookup/ takes the fields a device account is found by).
func catalogSchema(names []string, query bool) map[string]*framework.FieldSchema {
	all := credentialFields()
	fields := make(map[string]*framework.FieldSchema, len(names)+1)
	for _, name := range names {
		f := *all[name]
		f.Query = query
		fields[name] = &f
	}
	return fields
}

func pathDeviceAccounts(b *integrationsBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "device-accounts/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "device-account"},
			Fields:       deviceAccountFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOperation(b.pathDeviceAccountUpsert, "upsert", ""),
			},
			HelpSynopsis: "Create or update a device account, PAM style.",
			HelpDescription: `Found by identifier (its name) when given, else by hostname + ip + username; created
when not found. An update keeps stored secrets it does not send.` +
				examples("vault write integrations/device-accounts hostname=db1 ip=10.0.0.5 username=admin password=s3cret"),
		},
		{
			Pattern:      "lookup/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "device-account"},
			Fields:       catalogSchema([]string{"hostname", "ip", "username"}, true),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathLookup,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "look-up"},
				},
			},
			HelpSynopsis: "Find a device account by hostname, ip and username.",
			HelpDescription: "Returns the management view of the matching device account (never its secrets)." +
				examples("vault read integrations/lookup hostname=db1 ip=10.0.0.5 username=admin"),
		},
	}
}

// deviceTriple reads hostname, ip and username, refusing a request that lacks any.
func deviceTriple(ctx context.Context, raw map[string]any) (hostname, ip, username string, err error) {
	for _, f := range []struct {
		name string
		dst  *string
	}{{"hostname", &hostname}, {"ip", &ip}, {"username", &username}} {
		v, _ := raw[f.name].(string)
		*f.dst = strings.TrimSpace(v)
		if *f.dst == "" {
			return "", "", "", fieldErr(f.name, "is required to find a device account (hostname, ip and username)")
		}
	}
	// Normalize exactly as the validator does for the stored account (lower-case host
	// without a trailing dot, canonical unmapped IP), so that every spelling it accepts
	// finds the account, and a malformed value is refused by name.
	v, verr := credtype.DeviceAccountType().ValidateContext(ctx, map[string]any{"hostname": hostname, "ip": ip, "username": username}, time.Time{}, nil)
	if verr != nil {
		return "", "", "", verr
	}
	return str(v.Values["hostname"]), str(v.Values["ip"]), str(v.Values["username"]), nil
}

func (b *integrationsBackend) pathDeviceAccountUpsert(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	raw := make(map[string]any, len(d.Raw))
	for k, v := range d.Raw {
		if k != "identifier" {
			raw[k] = v
		}
	}
	var (
		name     = d.Get("identifier").(string)
		existing *credential
		held     credentialHeld
		unlock   func()
	)
	if name != "" {
		if !validName(name) {
			return logical.ErrorResponse(fieldErr("identifier", nameRule).Error()), nil
		}
		held, unlock = b.credentials.lock(name)
		c, err := b.credentials.get(ctx, req.Storage, name)
		if err != nil {
			unlock()
			return nil, err
		}
		existing = c
	} else {
		hostname, ip, username, err := deviceTriple(ctx, raw)
		if err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
		name, existing, held, unlock, err = b.findDeviceAccount(ctx, req.Storage, hostname, ip, username)
		if err != nil {
			return nil, err
		}
	}
	defer unlock()
	// This path changes device accounts only, whatever the name leads to.
	if existing != nil && existing.Type != deviceAccountType {
		return logical.ErrorResponse(fieldErr("identifier", fmt.Sprintf("names a credential of type %s, not a device account", existing.Type)).Error()), nil
	}
	raw["type"] = deviceAccountType
	// An upsert keeps what it does not send, as the PAM products do.
	c, _, err := b.buildCredential(ctx, req.Storage, name, raw, existing, existing != nil)
	if err != nil {
		return validationResponse(err)
	}
	if err := b.saveCredential(ctx, req.Storage, held, c, existing, ""); err != nil {
		return validationResponse(err)
	}
	b.recordEvent(name, writeEvent(existing), true, requestIntegration(req), "device-accounts upsert")
	resp, err := b.credentialResponse(ctx, req.Storage, c)
	if resp != nil {
		resp.Data["created"] = existing == nil
	}
	return resp, err
}

// findDeviceAccount finds the device account whose stored triple is the given one, or
// a free name to create it under, and returns with that name locked. What the index
// entry or a derived name leads to is only taken when the account there has this
// triple now: an account moved away since (or an entry left stale, or a hash that
// collides) is never rewritten by the old triple.
func (b *integrationsBackend) findDeviceAccount(ctx context.Context, s logical.Storage, hostname, ip, username string) (string, *credential, credentialHeld, func(), error) {
	var candidates []string
	indexedName, err := b.devices.named(ctx, s, hostname, ip, username)
	if err != nil {
		return "", nil, credentialHeld{}, nil, err
	}
	if indexedName != "" {
		candidates = append(candidates, indexedName)
	}
	indexed := len(candidates)
	candidates = append(candidates, deviceAccountNames(hostname, username, ip)...)
	for i, name := range candidates {
		held, unlock := b.credentials.lock(name)
		c, err := b.credentials.get(ctx, s, name)
		if err != nil {
			unlock()
			return "", nil, credentialHeld{}, nil, err
		}
		switch {
		case c.hasDeviceTriple(hostname, ip, username):
			return name, c, held, unlock, nil
		case c == nil && i >= indexed:
			return name, nil, held, unlock, nil // a derived name, free: create the account there
		}
		unlock()
	}
	return "", nil, credentialHeld{}, nil, errors.New("no free name for a new device account")
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// maxDeviceNameBase bounds the readable part of a derived name, so that with the
// longest hash suffix it stays within the 128 characters of the name rule.
const maxDeviceNameBase = 80

// deviceAccountNames derives names for a device account created without an
// identifier, in the order they are tried: readable parts plus a short hash of the
// identifying triple, then the same with a longer hash, then random suffixes for when
// those are taken by other credentials. Every one follows the name rule.
func deviceAccountNames(hostname, username, ip string) []string {
	h := deviceHash(hostname, ip, username)
	base := unsafeNameChars.ReplaceAllString(strings.ToLower(hostname)+"_"+strings.ToLower(username), "-")
	for strings.Contains(base, "..") {
		base = strings.ReplaceAll(base, "..", ".") // Vault's storage refuses ".." in a key
	}
	if len(base) > maxDeviceNameBase {
		base = base[:maxDeviceNameBase]
	}
	names := []string{base + "-" + hex.EncodeToString(h[:4]), base + "-" + hex.EncodeToString(h[:16])}
	for range 4 {
		var r [8]byte
		_, _ = rand.Read(r[:])
		names = append(names, base+"-"+hex.EncodeToString(r[:]))
	}
	out := names[:0]
	for _, n := range names {
		if !validName(n) {
			// Only a base that does not begin with a letter, digit or '_' gets here.
			n = "device_" + strings.TrimLeft(n, ".-")
		}
		if validName(n) {
			out = append(out, n)
		}
	}
	return out
}

func (b *integrationsBackend) pathLookup(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	hostname, ip, username, err := deviceTriple(ctx, d.Raw)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	// Only an account whose stored triple is the one asked for is found.
	c, err := b.devices.find(ctx, req.Storage, hostname, ip, username)
	if err != nil || c == nil {
		return nil, err
	}
	return b.credentialResponse(ctx, req.Storage, c)
}
