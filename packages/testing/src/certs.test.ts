import { describe, expect, it } from '@jest/globals';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { issueCert, makeCa } from './certs.js';

describe('test certificates', () => {
  it('issues a certificate the CA verifies, with its names and usages', () => {
    const ca = makeCa();
    const pair = issueCert(ca, {
      commonName: 'admin',
      organizations: ['system:masters'],
      ips: ['127.0.0.1'],
      dnsNames: ['localhost'],
    });
    const cert = new X509Certificate(pair.cert);
    expect(cert.verify(new X509Certificate(ca.cert).publicKey)).toBe(true);
    expect(cert.verify(new X509Certificate(makeCa().cert).publicKey)).toBe(false);
    expect(cert.subject).toContain('CN=admin');
    expect(cert.subject).toContain('O=system:masters');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.checkPrivateKey(createPrivateKey(pair.key))).toBe(true);
  });
});
