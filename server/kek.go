package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mamori/mamori/server/internal/keyring"
	"github.com/mamori/mamori/shared/securefs"
)

const kekUsage = "usage: mamori-server kek new FILE"

// cmdKEK runs "kek new FILE": a site's key-encryption key, written to a
// new private file rather than printed, so it lands in no terminal log.
func cmdKEK(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintln(stderr, kekUsage)
		return flag.ErrHelp
	}
	if len(args) != 2 || args[0] != "new" {
		return usageError{errors.New(kekUsage)}
	}
	path := args[1]
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("kek new: %s exists: an existing key is never overwritten", path)
	}
	// Private from birth on every OS (a protected DACL on Windows).
	if err := securefs.WriteSecretFile(path, []byte(keyring.NewKEKText()+"\n")); err != nil {
		return fmt.Errorf("kek new: %w", err)
	}
	k, err := keyring.ReadKEKFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote a new key-encryption key (id %s) to %s: give every server of the site a copy (mode 0600) and keep one offline\n", k.ID(), path)
	return nil
}
