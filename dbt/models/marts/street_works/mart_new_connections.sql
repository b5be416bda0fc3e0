-- New connections (a utility connecting a property to its network) per month, highway authority,
-- promoter and activity type: works in progress or completed in the month (int_permit_months)
-- whose activity type is `New service connection`, the seed project's definition
-- (stg_street_manager__permit_events.is_new_connection). The contract lists no such activity type
-- (its examples are `Remedial works`, `Utility asset works`, `Section 58`), so against data that
-- never uses it this mart is empty. DfT test data is left out.
{{ config(tags=['street_manager']) }}

{{ works_per_authority_and_promoter(
    works_where="is_new_connection and work_status_ref in ('in_progress', 'completed')",
    dimensions=['activity_type'],
    statuses=['in_progress', 'completed']) }}
