// The app side of the contract: a WatermelonDB appSchema and models for the
// synced tables, with the columns of schemas/sync.py (schema version 1).
//
// Plain CommonJS, no Babel: the models have no decorators.  Values are read
// with `record._getRaw(column)` and written with `record._setRaw(column, value)`
// inside `create()` / `update()` builders, which is what WatermelonDB's
// `@field` decorator does underneath.
'use strict'

const { appSchema, tableSchema, Model } = require('@nozbe/watermelondb')

const s = (name, isOptional = false) => ({ name, type: 'string', isOptional })
const n = (name, isOptional = false) => ({ name, type: 'number', isOptional })
const b = (name) => ({ name, type: 'boolean' })

const schema = appSchema({
  version: 1,
  tables: [
    tableSchema({
      name: 'projects',
      columns: [
        s('slug'), s('name'), s('description'), s('license'),
        n('min_latitude', true), n('min_longitude', true),
        n('max_latitude', true), n('max_longitude', true),
        n('agreements_required'), b('auto_accept'), n('max_uncertainty_m', true), b('is_open'),
      ],
    }),
    tableSchema({
      name: 'taxa',
      columns: [
        s('scientific_name'), s('rank'), s('vernacular_nl', true), s('vernacular_en', true),
        s('taxon_group'), b('sensitive'),
      ],
    }),
    tableSchema({
      name: 'phenophases',
      columns: [
        s('code'), s('name'), s('definition'), s('ppo_iri', true),
        s('groups'), s('intensity', true), // JSON-encoded lists
      ],
    }),
    tableSchema({
      name: 'observations',
      columns: [
        // client-owned
        s('project_id', true), s('taxon_id', true), s('phenophase_id', true),
        s('status'), s('intensity', true), s('observed_at'),
        n('latitude'), n('longitude'), n('coordinate_uncertainty_m', true),
        s('geoprivacy'), s('notes'), s('license'),
        n('created_at'), n('updated_at'), // WatermelonDB fills these in itself
        // server-owned: pulled, never pushed as changes
        s('review_status', true), s('quality_flags', true),
        s('verified_taxon_id', true), s('verified_phenophase_id', true),
        s('server_created_at', true), s('server_updated_at', true),
      ],
    }),
    tableSchema({
      name: 'photos',
      columns: [
        s('observation_id', true), s('sha256', true), s('license'),
        n('created_at'), n('updated_at'),
        s('upload_state', true), n('width', true), n('height', true),
        s('server_created_at', true), s('server_updated_at', true),
      ],
    }),
  ],
})

class Project extends Model {
  static table = 'projects'
}

class Taxon extends Model {
  static table = 'taxa'
}

class Phenophase extends Model {
  static table = 'phenophases'
}

class Observation extends Model {
  static table = 'observations'
  static associations = { photos: { type: 'has_many', foreignKey: 'observation_id' } }
}

class Photo extends Model {
  static table = 'photos'
  static associations = { observations: { type: 'belongs_to', key: 'observation_id' } }
}

const modelClasses = [Project, Taxon, Phenophase, Observation, Photo]

module.exports = { schema, modelClasses }
