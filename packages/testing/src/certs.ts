import { constants, generateKeyPairSync, privateEncrypt } from 'node:crypto';
import forge from 'node-forge';

/** A PEM certificate and its private key. */
export interface CertPair {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** Subject common name (a client's user name for kube-apiserver). */
  commonName: string;
  /** Subject organisations (a client's groups for kube-apiserver). Default none. */
  organizations?: string[];
  /** DNS names and IP addresses the certificate is valid for (server certificates). Default none. */
  dnsNames?: string[];
  ips?: string[];
  /** Usage. Default 'both'. */
  usage?: 'server' | 'client' | 'both';
  /** Validity in days. Default 1. */
  days?: number;
}

/** An RSA key pair from Node's native crypto (forge's pure-JS generation takes ~1.5 s per key). */
function newKeyPair(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey; pem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(publicKey),
    privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey,
    pem: privateKey,
  };
}

const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** Signs like forge's RSA key (PKCS#1 v1.5, SHA-256) with Node's crypto: forge's pure-JS signing is slow too. */
function nativeSigner(keyPem: string): forge.pki.rsa.PrivateKey {
  const sign = (md: forge.md.MessageDigest) =>
    privateEncrypt(
      { key: keyPem, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), 'binary')]),
    ).toString('binary');
  return { sign } as unknown as forge.pki.rsa.PrivateKey;
}

function newCert(subject: forge.pki.CertificateField[], days: number, publicKey: forge.pki.PublicKey) {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(15));
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * 86_400_000);
  cert.setSubject(subject);
  return cert;
}

/** A self-signed certificate authority, for tests (mTLS, the test control plane). */
export function makeCa(commonName = 'smelter-fleet test CA', days = 1): CertPair {
  const keys = newKeyPair();
  const subject = [{ name: 'commonName', value: commonName }];
  const cert = newCert(subject, days, keys.publicKey);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(nativeSigner(keys.pem), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A certificate signed by `ca`. */
export function issueCert(ca: CertPair, options: IssueOptions): CertPair {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const keys = newKeyPair();
  const subject: forge.pki.CertificateField[] = [{ name: 'commonName', value: options.commonName }];
  for (const o of options.organizations ?? []) subject.push({ name: 'organizationName', value: o });
  const cert = newCert(subject, options.days ?? 1, keys.publicKey);
  cert.setIssuer(caCert.subject.attributes);
  const usage = options.usage ?? 'both';
  const altNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(options.ips ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: usage !== 'client', clientAuth: usage !== 'server' },
    ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  cert.sign(nativeSigner(ca.key), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}
