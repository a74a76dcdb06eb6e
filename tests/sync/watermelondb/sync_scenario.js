// WatermelonDB's own synchronize() against a running Phenosync server.
//
// Started by tests/sync/test_watermelondb.py, which runs the server and then
// checks the server's database.  Environment:
//   PHENOSYNC_URL          base URL, e.g. http://127.0.0.1:40123
//   PHENOSYNC_TOKEN        a volunteer's bearer token (both devices: one user)
//   PHENOSYNC_RESULT_FILE  where to write the JSON summary for the Python side
//   PHENOSYNC_PAGE_SIZE    pull page size (small, so that paging is exercised)
//   PHENOSYNC_FLAGS        "created-as-updated" (default) or "default": see below
//
// Echoes: a pull after a push brings the device's own pushed records back
// (WatermelonDB's documented limitation 2), and the server lists a record as
// "created" when it was created after the cursor -- which the pushing device's
// own records were.  With WatermelonDB's default flags, a record created,
// synced, then deleted on the device before the next sync is recreated by
// that echo ("exists locally and is marked as deleted ... will delete local
// record and recreate it") and the deletion never reaches the server.  In
// "created-as-updated" mode the app treats every pulled record as "updated"
// (sendCreatedAsUpdated: true), for which WatermelonDB keeps a
// local deletion and creates records it does not have.  The server avoids
// the problem for apps with default flags too: a pull that sends X-Device-Id
// gets the device's own pushes back as "updated".  tests/sync/
// test_watermelondb.py runs both modes.
//
// push_count: the phone sends the optional counter of its pushes (kept in
// WatermelonDB's localStorage, taken anew for each push), as
// docs/sync-protocol.md shows; the tablet sends none, like WatermelonDB's own
// example.  Both must work.
//
// Paging: WatermelonDB's synchronize() makes one pull and one push.  We call
// synchronize() again while the server said `has_more` (read in
// onDidPullChanges), instead of merging all pages inside one pullChanges().
// Every page is a consistent prefix, so storing its cursor is safe; a dropped
// connection then costs at most one page; memory stays bounded by the page
// size; and there is no client-side merge of a record that changed between
// two pages (which would otherwise arrive twice, possibly once as a tombstone).
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const crypto = require('node:crypto')

const { Database, Q } = require('@nozbe/watermelondb')
const LokiJSAdapter = require('@nozbe/watermelondb/adapters/lokijs').default
const { synchronize, hasUnsyncedChanges } = require('@nozbe/watermelondb/sync')
const logger = require('@nozbe/watermelondb/utils/common/logger').default

const { schema, modelClasses } = require('./schema')

const BASE = process.env.PHENOSYNC_URL
const TOKEN = process.env.PHENOSYNC_TOKEN
const PAGE_SIZE = Number(process.env.PHENOSYNC_PAGE_SIZE || 20)
const CREATED_AS_UPDATED = (process.env.PHENOSYNC_FLAGS || 'created-as-updated') !== 'default'
const TABLES = ['projects', 'taxa', 'phenophases', 'observations', 'photos']
assert.ok(BASE && TOKEN, 'PHENOSYNC_URL and PHENOSYNC_TOKEN must be set')

// WatermelonDB reports protocol surprises through its logger; count them.
const watermelonErrors = []
const originalError = logger.error.bind(logger)
logger.error = (...args) => {
  watermelonErrors.push(args.map(String).join(' '))
  originalError(...args)
}

function step(title) {
  console.error(`[scenario] ${title}`)
}

async function call(method, path, body, headers = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: {
      Authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  if (!response.ok) {
    throw new Error(`${method} ${path} -> ${response.status}: ${text}`)
  }
  return JSON.parse(text)
}

function makeDevice(name, { pushCount = false } = {}) {
  const adapter = new LokiJSAdapter({
    schema,
    dbName: name,
    useWebWorker: false,
    useIncrementalIndexedDB: false, // no IndexedDB in Node: LokiJS keeps it in memory
  })
  return {
    name,
    database: new Database({ adapter, modelClasses }),
    deviceId: `${name}-${crypto.randomBytes(6).toString('hex')}`,
    pushCount,
    pulls: 0,
    pushes: [], // every push response, for the checks below
  }
}

// One full sync: synchronize() until the server has no more pages.
async function sync(device) {
  let hasMore = true
  let rounds = 0
  while (hasMore) {
    assert.ok(rounds < 100, 'pull did not converge')
    hasMore = false
    await synchronize({
      database: device.database,
      sendCreatedAsUpdated: CREATED_AS_UPDATED,
      pullChanges: async ({ lastPulledAt, schemaVersion, migration }) => {
        const query = new URLSearchParams({
          schema_version: String(schemaVersion),
          limit: String(PAGE_SIZE),
        })
        if (lastPulledAt !== null && lastPulledAt !== undefined) {
          query.set('last_pulled_at', String(lastPulledAt))
        }
        if (migration) query.set('migration', JSON.stringify(migration))
        const body = await call('GET', `/api/v1/sync/pull?${query}`, undefined,
          { 'X-Device-Id': device.deviceId })
        device.pulls += 1
        let changes = body.changes
        if (CREATED_AS_UPDATED) {
          changes = Object.fromEntries(Object.entries(changes).map(([table, c]) => [
            table, { created: [], updated: [...c.created, ...c.updated], deleted: c.deleted },
          ]))
        }
        return { changes, timestamp: body.timestamp, has_more: body.has_more }
      },
      onDidPullChanges: (rest) => {
        hasMore = Boolean(rest.has_more)
      },
      pushChanges: async ({ changes, lastPulledAt }) => {
        const query = new URLSearchParams({ last_pulled_at: String(lastPulledAt) })
        if (device.pushCount) {
          // Stored before sending; a retry of this push would send the same number.
          const count = ((await device.database.localStorage.get('push_count')) || 0) + 1
          await device.database.localStorage.set('push_count', count)
          query.set('push_count', String(count))
        }
        const body = await call(
          'POST', `/api/v1/sync/push?${query}`, { changes },
          { 'X-Device-Id': device.deviceId },
        )
        device.pushes.push(body)
        return { experimentalRejectedIds: body.experimentalRejectedIds }
      },
    })
    rounds += 1
  }
  return rounds
}

function lastResults(device, table = 'observations') {
  const body = device.pushes[device.pushes.length - 1]
  const byId = {}
  for (const r of (body.results[table] || [])) byId[r.id] = r
  return byId
}

async function create(device, table, values) {
  return device.database.write(() =>
    device.database.get(table).create((record) => {
      for (const [k, v] of Object.entries(values)) record._setRaw(k, v)
    }),
  )
}

async function find(device, table, id) {
  return device.database.get(table).find(id)
}

async function edit(device, table, id, values) {
  const record = await find(device, table, id)
  await device.database.write(() =>
    record.update((r) => {
      for (const [k, v] of Object.entries(values)) r._setRaw(k, v)
    }),
  )
}

async function remove(device, table, id) {
  const record = await find(device, table, id)
  await device.database.write(() => record.markAsDeleted())
}

// Everything a device holds, without WatermelonDB's local bookkeeping.
async function snapshot(device) {
  const out = {}
  for (const table of TABLES) {
    const records = await device.database.get(table).query().fetch()
    out[table] = records
      .map((r) => {
        const { _status, _changed, ...raw } = r._raw
        return raw
      })
      .sort((a, b) => (a.id < b.id ? -1 : 1))
  }
  return out
}

async function status(device, table, id) {
  return (await find(device, table, id))._raw._status
}

async function main() {
  const a = makeDevice('phone', { pushCount: true })
  const b = makeDevice('tablet')

  // --- 0. First sync of A: reference data, over several pages -------------
  step('0. First sync of A: reference data, over several pages')
  const rounds = await sync(a)
  assert.ok(rounds > 1, `expected several pages of reference data, got ${rounds}`)
  const projects = await a.database.get('projects').query().fetch()
  assert.equal(projects.length, 1)
  const project = projects[0]
  const [hazel] = await a.database.get('taxa').query(
    Q.where('scientific_name', 'Corylus avellana')).fetch()
  const [flowers] = await a.database.get('phenophases').query(Q.where('code', 'open_flowers'))
    .fetch()
  assert.ok(hazel && flowers, 'reference data pulled')
  assert.ok(JSON.parse(flowers._getRaw('groups')).includes(hazel._getRaw('taxon_group')))

  const base = {
    project_id: project.id,
    taxon_id: hazel.id,
    phenophase_id: flowers.id,
    status: 'yes',
    intensity: '5_24',
    observed_at: '2026-02-14T10:30:00+01:00',
    latitude: 51.9634,
    longitude: 5.6812,
    coordinate_uncertainty_m: 10,
    geoprivacy: 'open',
    notes: '',
    license: 'CC-BY-4.0',
  }

  // --- 1. A offline: create four, edit one, delete one, then sync ----------
  step('1. A offline: create four, edit one, delete one, then sync')
  const o1 = await create(a, 'observations', { ...base, notes: 'first' })
  const o2 = await create(a, 'observations', { ...base, status: 'no', intensity: null })
  const o3 = await create(a, 'observations', { ...base, observed_at: '2026-03-01T08:00:00+01:00' })
  const o4 = await create(a, 'observations', { ...base, latitude: 52.0755, longitude: 5.157 })
  const p1 = await create(a, 'photos', {
    observation_id: o1.id, sha256: 'a'.repeat(64), license: 'CC-BY-4.0',
  })
  await edit(a, 'observations', o1.id, { notes: 'windy, first catkins open' })
  await remove(a, 'observations', o2.id) // never reached the server
  assert.equal(await hasUnsyncedChanges({ database: a.database }), true)
  await sync(a)
  assert.equal(await hasUnsyncedChanges({ database: a.database }), false)
  let results = lastResults(a)
  for (const o of [o1, o3, o4]) assert.equal(results[o.id].status, 'applied', o.id)
  assert.equal(results[o2.id].status, 'unchanged')
  assert.equal(lastResults(a, 'photos')[p1.id].status, 'applied')

  // --- 2. A offline again: edit a synced record, delete one, create one -----
  step('2. A offline again: edit a synced record, delete one, create one')
  await edit(a, 'observations', o3.id, { status: 'no', intensity: null })
  await remove(a, 'observations', o4.id)
  const o5 = await create(a, 'observations', { ...base, notes: 'fifth' })
  await sync(a)
  results = lastResults(a)
  for (const o of [o3, o4, o5]) assert.equal(results[o.id].status, 'applied', o.id)
  await sync(a) // pulls the server's side of A's own pushes (review status, server times)
  // The quality checks ran at push: a clean record in an auto-accepting project.
  assert.equal((await find(a, 'observations', o5.id))._getRaw('review_status'), 'auto_accepted')

  // --- 3. B (same user, empty database) syncs and sees what A sees ---------
  step('3. B (same user, empty database) syncs and sees what A sees')
  await sync(b)
  assert.deepEqual(await snapshot(b), await snapshot(a))
  const liveIds = (await snapshot(b)).observations.map((o) => o.id).sort()
  assert.deepEqual(liveIds, [o1.id, o3.id, o5.id].sort())

  // --- 4. both edit offline (one record on both, other columns), sync twice
  step('4. both edit offline (one record on both, other columns), sync twice')
  await edit(b, 'observations', o1.id, { notes: 'B: catkins confirmed' })
  await edit(b, 'observations', o5.id, { intensity: '25_49' })
  await edit(a, 'observations', o3.id, { notes: 'A: cold morning' })
  await edit(a, 'observations', o5.id, { notes: 'A: fifth, edited' })
  await sync(a)
  await sync(b) // pulls A's edits, merges its own o5 change per column, pushes
  assert.equal(lastResults(b)[o5.id].status, 'applied')
  await sync(a)
  await sync(b)
  const snapA = await snapshot(a)
  assert.deepEqual(await snapshot(b), snapA)
  const o5Now = snapA.observations.find((o) => o.id === o5.id)
  assert.equal(o5Now.notes, 'A: fifth, edited')
  assert.equal(o5Now.intensity, '25_49')

  // --- 5. server-side rejections keep the record unsynced locally ---------
  step('5. server-side rejections keep the record unsynced locally')
  const bad = await create(a, 'observations', { ...base, latitude: 123, notes: 'bad latitude' })
  const future = await create(a, 'observations', {
    ...base, observed_at: '2099-05-01T10:00:00+02:00', notes: 'future',
  })
  await sync(a)
  results = lastResults(a)
  assert.equal(results[bad.id].status, 'rejected')
  assert.equal(results[bad.id].code, 'invalid_record')
  assert.equal(results[future.id].code, 'future_date')
  const rejected = a.pushes[a.pushes.length - 1].experimentalRejectedIds.observations
  assert.deepEqual([...rejected].sort(), [bad.id, future.id].sort())
  assert.equal(await status(a, 'observations', bad.id), 'created')
  assert.equal(await status(a, 'observations', future.id), 'created')
  assert.equal(await hasUnsyncedChanges({ database: a.database }), true)
  // Fixed on the device, it goes through on the next sync; the other stays.
  await edit(a, 'observations', bad.id, { latitude: 52.1 })
  await sync(a)
  results = lastResults(a)
  assert.equal(results[bad.id].status, 'applied')
  assert.equal(results[future.id].status, 'rejected')
  assert.equal(await status(a, 'observations', bad.id), 'synced')
  assert.equal(await status(a, 'observations', future.id), 'created')
  await sync(b)
  const onB = (await snapshot(b)).observations.map((o) => o.id)
  assert.ok(onB.includes(bad.id) && !onB.includes(future.id))

  const final = await snapshot(b)
  const summary = {
    observations: Object.fromEntries(final.observations.map((o) => [o.id, o])),
    photos: final.photos.map((p) => p.id),
    deleted_on_server: [o4.id],
    never_on_server: [o2.id, future.id],
    device_ids: [a.deviceId, b.deviceId],
    pulls: { a: a.pulls, b: b.pulls },
    watermelon_errors: watermelonErrors,
  }
  if (process.env.PHENOSYNC_RESULT_FILE) {
    fs.writeFileSync(process.env.PHENOSYNC_RESULT_FILE, JSON.stringify(summary, null, 1))
  }
  console.log(`watermelondb scenario passed: ${a.pulls + b.pulls} pulls, ` +
    `${a.pushes.length + b.pushes.length} pushes`)
}

// LokiJS keeps a timer running: exit explicitly.
main().then(() => process.exit(0), (error) => {
  console.error(error)
  process.exit(1)
})
