-- Emergency works per month, highway authority, promoter and category: the works of the two
-- immediate categories (`Immediate - emergency`, `Immediate - urgent`: the seed project counted
-- both) in progress or completed in the month (int_permit_months), with how many were on
-- traffic-sensitive streets, needed a TTRO or closed the road. DfT test data is left out.
{{ config(tags=['street_manager']) }}

{{ works_per_authority_and_promoter(
    works_where="is_immediate_works and work_status_ref in ('in_progress', 'completed')",
    dimensions=['work_category'],
    statuses=['in_progress', 'completed'],
    measures=[
        ["count(*) filter (where is_traffic_sensitive = 'Yes')", 'works_on_traffic_sensitive_streets'],
        ["count(*) filter (where is_ttro_required = 'Yes')", 'works_needing_ttro'],
        ["count(*) filter (where effective_traffic_management_type_ref = 'road_closure')", 'road_closures'],
        ['median(planned_duration_days)', 'median_planned_duration_days'],
    ]) }}
