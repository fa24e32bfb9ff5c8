package eventlog

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
)

// The reserve is a file of real bytes beside the store that the store gives
// up each time it opens. Opening rebuilds the WAL's index in the -shm file,
// 32 KiB for every 4062 pages of WAL; a disk that filled up while the WAL
// was large may have no room for it, and then the server could not start
// until someone freed space (TestReopenOnFullDisk). 1 MiB covers a WAL of
// some 500 MiB. It is written again once the store is open, if there is
// room; its bytes are random, so a compressing file system stores them all.
const reserveSize = 1 << 20

// releaseReserve removes the reserve at path, if there is one.
func releaseReserve(path string) (bool, error) {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("eventlog: release reserve: %w", err)
	}
	return true, nil
}

// makeReserve writes the reserve at path; on failure it leaves none, so
// that a nearly full disk keeps its last bytes for the store.
func makeReserve(path string) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("eventlog: reserve: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("eventlog: reserve: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	b := make([]byte, reserveSize)
	rand.NewChaCha8([32]byte{'m', 'a', 'm', 'o', 'r', 'i'}).Read(b)
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("eventlog: reserve: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("eventlog: reserve: %w", err)
	}
	return nil
}
