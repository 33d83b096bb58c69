package main

import (
	"crypto/hmac"
	"crypto/sha256"
)

// secretForTest makes p sign with another secret.
func (p *poster) secretForTest(secret []byte) { p.signer.mac = hmac.New(sha256.New, secret) }
