// SMART auth metadata as fhir-kit-client (npm) finds it on a running Carnet.
//
// Usage: node auth_metadata.mjs FHIR_BASE. Prints one JSON line: what smartAuthMetadata()
// returns (it races smart-configuration, metadata and openid-configuration), and what the
// library reads from the CapabilityStatement alone (its oauth-uris extension).

import { Client } from 'fhir-kit-client';
// Not exported by the package: imported by path to check the CapabilityStatement on its own.
import { authFromCapability } from './node_modules/fhir-kit-client/dist/smart.js';

const href = (url) => (url ? url.href : null);
const client = new Client({ baseUrl: process.argv[2] });
const raced = await client.smartAuthMetadata();
const fromCapability = authFromCapability(await client.capabilityStatement());
console.log(JSON.stringify({
  tokenUrl: href(raced.tokenUrl),
  authorizeUrl: href(raced.authorizeUrl),
  capabilityTokenUrl: href(fromCapability.tokenUrl),
  capabilityAuthorizeUrl: href(fromCapability.authorizeUrl),
}));
