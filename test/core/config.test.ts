import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig } from '../../src/core/config.ts';
import { AppError } from '../../src/core/errors.ts';
import { DEFAULT_TARIFF } from '../../src/ledger/tariff.ts';

// Configuration from the environment (docs/configuration.md).

/** Asserts a bad_config refusal whose message names the variable. */
const refuses = (env: Record<string, string>, name: string) =>
  assert.throws(
    () => loadConfig(env),
    (e: unknown) => e instanceof AppError && e.code === 'bad_config' && e.message.includes(name),
    JSON.stringify(env),
  );

test('defaults with an empty environment', () => {
  const c = loadConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8080);
  assert.equal(c.dataDir, path.resolve('./data'));
  assert.deepEqual(c.tariff, DEFAULT_TARIFF);
  assert.notEqual(c.tariff, DEFAULT_TARIFF, 'a copy, so changing it leaves the defaults alone');
  assert.equal(c.signupCredit, 0);
  assert.equal(c.settleIntervalMs, 1000);
  assert.equal(c.holdTimeoutMs, 3_600_000);
  assert.equal(c.refetchPolicy, 'free');
  // Empty strings count as unset.
  assert.deepEqual(loadConfig({ OFF_PEAK_HOURS: '', ROYALTY_PERCENT: '', OFF_PEAK_TIME_ZONE: '', SIGNUP_CREDIT: '' }), c);
});

test('every ledger and tariff variable overrides its default', () => {
  const c = loadConfig({
    SIGNUP_CREDIT: '500',
    SETTLE_INTERVAL_MS: '10',
    HOLD_TIMEOUT_MS: '1000',
    UPLOADER_SHARE_PERCENT: '60',
    ROYALTY_PERCENT: '40',
    OFF_PEAK_HOURS: '1-7',
    OFF_PEAK_TIME_ZONE: 'Europe/Berlin',
    OFF_PEAK_RATE_PERCENT: '70',
    FREQUENT_RECEIVER_BYTES: '1000',
    FREQUENT_RATE_PERCENT: '95',
    DISTRIBUTOR_BYTES: '0',
    DISTRIBUTOR_RATE_PERCENT: '100',
    REFETCH_POLICY: 'charge',
    PLAY_PRICE_PERCENT: '25',
  });
  assert.equal(c.signupCredit, 500);
  assert.equal(c.settleIntervalMs, 10);
  assert.equal(c.holdTimeoutMs, 1000);
  assert.equal(c.refetchPolicy, 'charge');
  assert.deepEqual(c.tariff, {
    uploaderPercent: 60,
    royaltyPercent: 40,
    offPeakStartHour: 1,
    offPeakEndHour: 7,
    offPeakTimeZone: 'Europe/Berlin',
    offPeakRatePercent: 70,
    frequentReceiverBytes: 1000,
    frequentRatePercent: 95,
    distributorBytes: 0,
    distributorRatePercent: 100,
    playPricePercent: 25,
  });
  assert.deepEqual(
    [loadConfig({ OFF_PEAK_HOURS: ' 22 - 6 ' }).tariff, loadConfig({ OFF_PEAK_HOURS: '0-23' }).tariff].map((t) => [t.offPeakStartHour, t.offPeakEndHour]),
    [
      [22, 6],
      [0, 23],
    ],
  );
});

test('bad values are refused with bad_config naming the variable', () => {
  refuses({ SIGNUP_CREDIT: '-1' }, 'SIGNUP_CREDIT');
  refuses({ SIGNUP_CREDIT: '1.5' }, 'SIGNUP_CREDIT');
  refuses({ SETTLE_INTERVAL_MS: '9' }, 'SETTLE_INTERVAL_MS');
  refuses({ SETTLE_INTERVAL_MS: 'soon' }, 'SETTLE_INTERVAL_MS');
  refuses({ HOLD_TIMEOUT_MS: '999' }, 'HOLD_TIMEOUT_MS');
  for (const n of ['30000', '1000', '512', '2097152', '2^15']) refuses({ PASSWORD_SCRYPT_N: n }, 'PASSWORD_SCRYPT_N');
  assert.equal(loadConfig({}).passwordScryptN, 32_768);
  assert.equal(loadConfig({ PASSWORD_SCRYPT_N: '1024' }).passwordScryptN, 1024);
  refuses({ REFETCH_POLICY: 'sometimes' }, 'REFETCH_POLICY');
  for (const name of ['UPLOADER_SHARE_PERCENT', 'ROYALTY_PERCENT', 'OFF_PEAK_RATE_PERCENT', 'FREQUENT_RATE_PERCENT', 'DISTRIBUTOR_RATE_PERCENT', 'PLAY_PRICE_PERCENT']) {
    refuses({ [name]: '101' }, name);
    refuses({ [name]: '-1' }, name);
    refuses({ [name]: '50%' }, name);
  }
  refuses({ UPLOADER_SHARE_PERCENT: '61', ROYALTY_PERCENT: '40' }, 'UPLOADER_SHARE_PERCENT');
  refuses({ UPLOADER_SHARE_PERCENT: '61' }, 'ROYALTY_PERCENT'); // with the default royalty of 40
  refuses({ FREQUENT_RECEIVER_BYTES: '-1' }, 'FREQUENT_RECEIVER_BYTES');
  refuses({ DISTRIBUTOR_BYTES: '10GiB' }, 'DISTRIBUTOR_BYTES');
  for (const hours of ['22', '22-24', '24-6', '-1-6', '22:00-06:00', 'night', '22-6-1']) refuses({ OFF_PEAK_HOURS: hours }, 'OFF_PEAK_HOURS');
  refuses({ OFF_PEAK_TIME_ZONE: 'Mars/Olympus' }, 'OFF_PEAK_TIME_ZONE');
  refuses({ OFF_PEAK_TIME_ZONE: '+01:00' }, 'OFF_PEAK_TIME_ZONE');
});

test('PEER_ADDRESSES: private by default; public, private or any; anything else stops the origin (issue 10 #8)', () => {
  assert.equal(loadConfig({}).peerAddresses, 'private');
  for (const v of ['public', 'private', 'any'] as const) assert.equal(loadConfig({ PEER_ADDRESSES: v }).peerAddresses, v);
  for (const v of ['none', 'ANY', 'loopback']) refuses({ PEER_ADDRESSES: v }, 'PEER_ADDRESSES');
});

test('mail (S3.8): no SMTP_URL by default (mail is held), MAIL_FROM and MAIL_MAX_ATTEMPTS; a URL that is not smtp(s) stops the origin', () => {
  const d = loadConfig({});
  assert.equal(d.smtpUrl, undefined);
  assert.equal(d.mailFrom, 'Cascade <cascade@localhost>');
  assert.equal(d.mailMaxAttempts, 8);
  const c = loadConfig({ SMTP_URL: 'smtps://cascade:secret@mail.example.org:465', MAIL_FROM: 'Live <live@example.org>', MAIL_MAX_ATTEMPTS: '3' });
  assert.deepEqual([c.smtpUrl, c.mailFrom, c.mailMaxAttempts], ['smtps://cascade:secret@mail.example.org:465', 'Live <live@example.org>', 3]);
  refuses({ SMTP_URL: 'http://mail.example.org' }, 'SMTP_URL');
  refuses({ SMTP_URL: 'mail.example.org:25' }, 'SMTP_URL');
  refuses({ MAIL_MAX_ATTEMPTS: '0' }, 'MAIL_MAX_ATTEMPTS');
});
