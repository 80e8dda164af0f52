// Evaluates flags through the official OpenFeature Node SDK and its OFREP provider.
// stdin: {"baseUrl", "token", "cases": [{"flag", "type": "boolean"|"string"|"number"|"object",
//         "default", "context"}]}; stdout: one result per case, as JSON:
// {"flag", "value", "variant", "reason", "errorCode", "metadata"}.
'use strict';
const fs = require('fs');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

async function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const provider = new OFREPProvider({
    baseUrl: input.baseUrl,
    headers: [['Authorization', `Bearer ${input.token}`]],
  });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  const details = {
    boolean: client.getBooleanDetails.bind(client),
    string: client.getStringDetails.bind(client),
    number: client.getNumberDetails.bind(client),
    object: client.getObjectDetails.bind(client),
  };
  const results = [];
  for (const c of input.cases) {
    const evaluate = details[c.type];
    if (!evaluate) throw new Error(`unknown type ${c.type}`);
    const d = await evaluate(c.flag, c.default, c.context);
    results.push({
      flag: c.flag,
      value: d.value,
      variant: d.variant ?? null,
      reason: d.reason ?? null,
      errorCode: d.errorCode ?? null,
      metadata: d.flagMetadata ?? {},
    });
  }
  process.stdout.write(JSON.stringify(results));
  await OpenFeature.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
